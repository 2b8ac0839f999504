// EulerDiscreteScheduler after diffusers' scheduling_euler_discrete.py: Euler's method on the
// probability-flow ODE in sigma space (Karras et al. 2022, algorithm 2 without churn).
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, karrasSigmas, linspaceF32, sigmaTable, sigmaToT, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { noiseBySigma, scaleBySigma, sigmaInitNoise, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys Euler reads; a missing or null key takes diffusers' default, shown here. */
export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** "linear" (sigmas interpolated at the timesteps) or "log_linear" (log-spaced over the whole range). */
  interpolation_type: 'linear',
  /** Karras et al.'s rho = 7 spacing of the sigmas; the timesteps then become fractional. */
  use_karras_sigmas: false,
  /** Not supported: only false. */
  use_exponential_sigmas: false,
  /** Not supported (needs scipy's beta ppf in diffusers): only false. */
  use_beta_sigmas: false,
  /** Ends of the Karras range; null = the schedule's own smallest / largest sigma. */
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  /** "linspace", "leading" or "trailing". */
  timestep_spacing: 'linspace',
  /** "discrete", or "continuous" (with v_prediction the model gets 0.25 * log(sigma) as its timestep). */
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  /** The sigma after the last step: "zero" or "sigma_min" (the schedule's smallest sigma). */
  final_sigmas_type: 'zero',
};
export type EulerConfig = typeof EULER_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]', sigma_min: 'number', sigma_max: 'number' };

const NAME = 'EulerDiscreteScheduler';
const f32 = Math.fround;

export class EulerDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly config: EulerConfig;
  /** float32 values, as diffusers keeps them; fractional with Karras sigmas or linspace spacing. */
  timesteps: number[];
  /** One per timestep plus the final sigma (0 unless final_sigmas_type is "sigma_min"), float32 values. */
  sigmas: number[];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, EULER_DEFAULTS, config, NULLABLE));
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample', 'original_sample']);
    checkOneOf(NAME, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    checkOneOf(NAME, 'interpolation_type', c.interpolation_type, ['linear', 'log_linear']);
    checkOneOf(NAME, 'timestep_type', c.timestep_type, ['discrete', 'continuous']);
    checkOneOf(NAME, 'final_sigmas_type', c.final_sigmas_type, ['zero', 'sigma_min']);
    if (c.use_exponential_sigmas || c.use_beta_sigmas) {
      throw new Error(`${NAME}: use_exponential_sigmas and use_beta_sigmas are not supported (use use_karras_sigmas)`);
    }
    this.alphasCumprod = alphasCumprod(NAME, c);
    // zero terminal SNR would make the top sigma infinite; diffusers caps it like this
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    const table = sigmaTable(this.alphasCumprod);
    this.sigmas = [...table].reverse().concat(0);
    const T = c.num_train_timesteps;
    this.timesteps = c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction'
      ? this.sigmas.slice(0, -1).map(continuousTimestep)
      : Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** The largest sigma, or sqrt(sigma² + 1) with leading spacing (whose first timestep is below the top). */
  get initNoiseSigma(): number {
    return sigmaInitNoise(this.sigmas, this.config.timestep_spacing);
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    let timesteps = spacedTimesteps(c.timestep_spacing, T, n, c.steps_offset);
    timesteps = timesteps.map(f32);
    const table = sigmaTable(this.alphasCumprod);
    const logTable = table.map((s) => f32(Math.log(s)));
    let sigmas: number[];
    if (c.interpolation_type === 'linear') {
      sigmas = timesteps.map((t) => interp(t, table));
    } else {
      sigmas = [...linspaceF32(logTable[logTable.length - 1], logTable[0], n + 1)].map((l) => f32(Math.exp(l)));
    }
    if (c.use_karras_sigmas) {
      const low = c.sigma_min ?? sigmas[sigmas.length - 1];
      const high = c.sigma_max ?? sigmas[0];
      sigmas = karrasSigmas(low, high, n);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logTable)));
    }
    const last = c.final_sigmas_type === 'sigma_min' ? table[0] : 0;
    this.sigmas = [...sigmas, last].map(f32);
    this.timesteps = c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction'
      ? this.sigmas.slice(0, -1).map(continuousTimestep)
      : timesteps;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.initStepIndex(t);
    const sigma = this.sigmas[this.stepIndex!];
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    this.initStepIndex(t);
    const index = this.stepIndex!;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const sigma = this.sigmas[index];
    // x0 = x0FromSample * x + x0FromOutput * out (no churn: sigma_hat = sigma)
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigma);
    const dt = this.sigmas[index + 1] - sigma;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = x0FromSample * x + x0FromOutput * modelOutput[i];
      predOriginalSample[i] = x0;
      prevSample[i] = x + ((x - x0) / sigma) * dt;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    return noiseBySigma(NAME, original, noise, this.sigmas[index]);
  }

  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    if (index < 0) throw new Error(`${NAME}: timestep ${t} is not one of this schedule's timesteps`);
    return index;
  }

  private initStepIndex(t: number): void {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
  }
}

function continuousTimestep(sigma: number): number {
  return f32(0.25 * f32(Math.log(sigma)));
}
