// HeunDiscreteScheduler after diffusers' scheduling_heun_discrete.py: Heun's second-order method on the
// probability-flow ODE (Karras et al. 2022, algorithm 1 without churn). Every inference step but the last
// is two model calls: an Euler predictor to the next sigma, then the corrector that averages the two slopes.
// timesteps therefore repeat every entry but the first, and the pipeline calls the model at each.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { betaScheduleDefaults, checkSigmaOptions, noiseBySigma, scaleBySigma, sigmaInitNoise, TIMESTEP_SPACING_DEFAULTS, UNSUPPORTED_SIGMA_SPACINGS, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys Heun reads; a missing or null key takes diffusers' default, shown here. */
export const HEUN_DEFAULTS = {
  ...betaScheduleDefaults(0.00085, 0.012),
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  ...UNSUPPORTED_SIGMA_SPACINGS,
  /** Clamp the predicted x0 to ±clip_sample_range. */
  clip_sample: false,
  clip_sample_range: 1.0,
  ...TIMESTEP_SPACING_DEFAULTS,
};
export type HeunConfig = typeof HEUN_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'HeunDiscreteScheduler';
const f32 = Math.fround;

export class HeunDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 2;
  readonly config: HeunConfig;
  /** float32 values: every inference timestep but the first twice. */
  timesteps: number[] = [];
  /** float32 values: every sigma but the first and the final 0 twice. */
  sigmas: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the predictor's slope, step and sample, kept for the corrector; null between pairs
  private prevDerivative: Float64Array | null = null;
  private dt: number | null = null;
  private saved: Float32Array | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, HEUN_DEFAULTS, config, NULLABLE));
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    checkSigmaOptions(NAME, c);
    this.alphasCumprod = alphasCumprod(NAME, c);
    // diffusers' __init__ sets the full training schedule
    this.setTimesteps(c.num_train_timesteps);
  }

  /** The largest sigma, or sqrt(sigma² + 1) with leading spacing. */
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
    const sigmas = [...timesteps.map((t) => interp(t, table)), 0].map(f32);
    this.sigmas = [sigmas[0], ...sigmas.slice(1, -1).flatMap((s) => [s, s]), sigmas[sigmas.length - 1]];
    this.timesteps = [timesteps[0], ...timesteps.slice(1).flatMap((t) => [t, t])];
    this.prevDerivative = null;
    this.dt = null;
    this.saved = null;
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
    const first = this.dt === null;
    // predictor: from this sigma to the next; corrector: the same interval, seen from its end
    const sigma = first ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaNext = first ? this.sigmas[index + 1] : this.sigmas[index];
    const sigmaInput = first ? sigma : sigmaNext;
    // x0 = x0FromSample * x + x0FromOutput * out
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigmaInput);
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Infinity;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    if (first) {
      const dt = sigmaNext - sigma;
      const derivative = new Float64Array(sample.length);
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        const x0 = Math.min(clip, Math.max(-clip, x0FromSample * x + x0FromOutput * modelOutput[i]));
        predOriginalSample[i] = x0;
        derivative[i] = (x - x0) / sigma;
        prevSample[i] = x + derivative[i] * dt;
      }
      [this.prevDerivative, this.dt, this.saved] = [derivative, dt, sample.slice()];
    } else {
      const [prev, dt, base] = [this.prevDerivative!, this.dt!, this.saved!];
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        const x0 = Math.min(clip, Math.max(-clip, x0FromSample * x + x0FromOutput * modelOutput[i]));
        predOriginalSample[i] = x0;
        const derivative = ((x - x0) / sigmaNext + prev[i]) / 2;
        prevSample[i] = base[i] + derivative * dt;
      }
      [this.prevDerivative, this.dt, this.saved] = [null, null, null];
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
