// KDPM2DiscreteScheduler after diffusers' scheduling_k_dpm_2_discrete.py: k-diffusion's DPM-Solver-2
// (sample_dpm_2). Each step but the last is two model calls: an Euler half-step to the log-midpoint
// sigma, then the whole step taken with the slope measured there. timesteps interleave each midpoint's
// timestep before the next sigma's.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, sigmaToT, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { betaScheduleDefaults, checkSigmaOptions, noiseBySigma, scaleBySigma, sigmaInitNoise, TIMESTEP_SPACING_DEFAULTS, UNSUPPORTED_SIGMA_SPACINGS, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys KDPM2 reads; a missing or null key takes diffusers' default, shown here. */
export const KDPM2_DEFAULTS = {
  ...betaScheduleDefaults(0.00085, 0.012),
  ...UNSUPPORTED_SIGMA_SPACINGS,
  /** "epsilon" or "v_prediction" (diffusers' KDPM2 has no "sample"). */
  prediction_type: 'epsilon',
  ...TIMESTEP_SPACING_DEFAULTS,
};
export type KDPM2Config = typeof KDPM2_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'KDPM2DiscreteScheduler';
const f32 = Math.fround;

export class KDPM2DiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 2;
  readonly config: KDPM2Config;
  /** float32 values: the first timestep, then each midpoint's timestep before the next one's. */
  timesteps: number[] = [];
  /** float32 values: the first sigma, then every other one (the final 0 included) twice. */
  sigmas: number[] = [];
  /** The log-midpoint sigmas, laid out as `sigmas`. */
  private sigmasInterpol: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the sample at the start of a pair, kept for its second half; null between pairs
  private saved: Float32Array | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, KDPM2_DEFAULTS, config, NULLABLE));
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction']);
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
    const logTable = table.map((s) => f32(Math.log(s)));
    const sigmas = [...timesteps.map((t) => interp(t, table)), 0].map(f32);
    // Log-midpoints with the sigma before, as torch's lerp at weight 0.5: end - (end - start) * 0.5.
    // The first (beside no sigma) and the last (beside 0) are never used; 0 stands for both.
    const mid = sigmas.map((s, k) => {
      const prev = sigmas[(k - 1 + sigmas.length) % sigmas.length];
      if (s === 0 || prev === 0) return 0;
      const [start, end] = [f32(Math.log(s)), f32(Math.log(prev))];
      return f32(Math.exp(f32(end - f32(f32(end - start) * 0.5))));
    });
    this.sigmas = [sigmas[0], ...sigmas.slice(1).flatMap((s) => [s, s])];
    this.sigmasInterpol = [mid[0], ...mid.slice(1).flatMap((s) => [s, s])];
    const tMid = mid.map((s) => f32(sigmaToT(s, logTable)));
    this.timesteps = [timesteps[0], ...timesteps.slice(1).flatMap((t, k) => [tMid[k + 1], t])];
    this.saved = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.initStepIndex(t);
    const index = this.stepIndex!;
    const sigma = this.saved === null ? this.sigmas[index] : this.sigmasInterpol[index];
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    this.initStepIndex(t);
    const index = this.stepIndex!;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const first = this.saved === null;
    const sigma = first ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaMid = first ? this.sigmasInterpol[index + 1] : this.sigmasInterpol[index];
    const sigmaNext = first ? this.sigmas[index + 1] : this.sigmas[index];
    const sigmaInput = first ? sigma : sigmaMid;
    // x0 = x0FromSample * x + x0FromOutput * out
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigmaInput);
    // first half: slope at sigma, step to the midpoint; second: slope at the midpoint, the whole step
    const slopeAt = first ? sigma : sigmaMid;
    const dt = first ? sigmaMid - sigma : sigmaNext - sigma;
    const base = first ? sample : this.saved!;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = x0FromSample * x + x0FromOutput * modelOutput[i];
      predOriginalSample[i] = x0;
      prevSample[i] = base[i] + ((x - x0) / slopeAt) * dt;
    }
    this.saved = first ? sample.slice() : null;
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
