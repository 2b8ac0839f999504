// EulerAncestralDiscreteScheduler after diffusers' scheduling_euler_ancestral_discrete.py: an Euler
// step down to sigma_down, then fresh noise of scale sigma_up, so that sigma_down² + sigma_up² is the
// next sigma². Every step draws noise (the last one with sigma_up = 0), as diffusers does.
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { noiseBySigma, scaleBySigma, sigmaInitNoise, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys Euler a reads; a missing or null key takes diffusers' default, shown here. */
export const EULER_ANCESTRAL_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** "epsilon" or "v_prediction" (diffusers has not implemented "sample" here). */
  prediction_type: 'epsilon',
  /** "linspace", "leading" or "trailing". */
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type EulerAncestralConfig = typeof EULER_ANCESTRAL_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'EulerAncestralDiscreteScheduler';
const f32 = Math.fround;

export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly config: EulerAncestralConfig;
  /** float32 values, as diffusers keeps them; fractional with linspace spacing. */
  timesteps: number[];
  /** One per timestep plus the final 0, float32 values. */
  sigmas: number[];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, EULER_ANCESTRAL_DEFAULTS, config, NULLABLE));
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction']);
    checkOneOf(NAME, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    this.alphasCumprod = alphasCumprod(NAME, c);
    // zero terminal SNR would make the top sigma infinite; diffusers caps it like this
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.sigmas = sigmaTable(this.alphasCumprod).reverse().concat(0);
    const T = c.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
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
    this.timesteps = timesteps.map(f32);
    const table = sigmaTable(this.alphasCumprod);
    this.sigmas = [...this.timesteps.map((t) => interp(t, table)), 0].map(f32);
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

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (!rng) throw new Error(`${NAME}: step needs an rng (every ancestral step adds fresh noise)`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    this.initStepIndex(t);
    const index = this.stepIndex!;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const sigma = this.sigmas[index];
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigma);
    const sigmaTo = this.sigmas[index + 1];
    const sigmaUp = Math.sqrt((sigmaTo ** 2 * (sigma ** 2 - sigmaTo ** 2)) / sigma ** 2);
    const sigmaDown = Math.sqrt(sigmaTo ** 2 - sigmaUp ** 2);
    const dt = sigmaDown - sigma;
    const noise = rng.randn(sample.length);
    if (noise.length !== sample.length) throw new Error(`${NAME}: rng.randn(${sample.length}) returned ${noise.length} values`);
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = x0FromSample * x + x0FromOutput * modelOutput[i];
      predOriginalSample[i] = x0;
      prevSample[i] = x + ((x - x0) / sigma) * dt + noise[i] * sigmaUp;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    return noiseBySigma(NAME, original, noise, this.sigmas[index]);
  }

  // Copied from euler.ts#indexForTimestep
  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    if (index < 0) throw new Error(`${NAME}: timestep ${t} is not one of this schedule's timesteps`);
    return index;
  }

  // Copied from euler.ts#initStepIndex
  private initStepIndex(t: number): void {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
  }
}
