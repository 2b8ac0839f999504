// LCMScheduler after diffusers' scheduling_lcm.py (Latent Consistency Models). Each step maps the
// sample straight to a denoised estimate through the consistency boundary condition
// (c_skip * x + c_out * x0), then, except at the last step, re-noises it to the next timestep with
// fresh noise. The timesteps are a subset of the original_inference_steps grid the model was
// distilled on, so timestep_spacing and steps_offset do not apply (nor do they in diffusers).
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys LCM reads; a missing or null key takes diffusers' default, shown here. */
export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'scaled_linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** The length of the schedule the model was distilled on; the inference timesteps are drawn from it. */
  original_inference_steps: 50,
  /** Clamp the predicted x0 to ±clip_sample_range. */
  clip_sample: false,
  clip_sample_range: 1.0,
  /** Re-noising past the last timestep uses alpha_cumprod = 1 (true) or alphas_cumprod[0] (false). */
  set_alpha_to_one: true,
  /** Ignored by LCM's timesteps, as in diffusers. */
  steps_offset: 0,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** Dynamic thresholding is for pixel-space models and is not supported: only false. */
  thresholding: false,
  /** Ignored by LCM's timesteps, as in diffusers. */
  timestep_spacing: 'leading',
  /** The boundary condition sees t * timestep_scaling. */
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};
export type LCMConfig = typeof LCM_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'LCMScheduler';

export class LCMScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: LCMConfig;
  timesteps: number[];
  private readonly alphasCumprod: Float64Array;
  private readonly finalAlphaCumprod: number;
  private numInferenceSteps: number | null = null;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, LCM_DEFAULTS, config, NULLABLE));
    if (c.thresholding) throw new Error(`${NAME}: thresholding is not supported (got true)`);
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    this.alphasCumprod = alphasCumprod(NAME, c);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const T = c.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: T, original_inference_steps: original } = this.config;
    const n = numInferenceSteps;
    if (!Number.isInteger(original) || original < 1 || original > T) {
      throw new Error(`${NAME}: original_inference_steps must be an integer in 1..${T} (got ${original})`);
    }
    if (!Number.isInteger(n) || n < 1 || n > original) {
      throw new Error(`${NAME}: numInferenceSteps must be an integer in 1..${original} (original_inference_steps) (got ${n})`);
    }
    // the distillation grid k - 1, 2k - 1, ..., T - 1 (descending), sampled at evenly spaced positions
    const k = Math.floor(T / original);
    const grid = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
    const spacing = original / n;
    this.timesteps = Array.from({ length: n }, (_, i) => grid[Math.floor(i * spacing)]);
    this.numInferenceSteps = n;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  /** predOriginalSample is diffusers' `denoised`: the boundary-conditioned estimate that the last step returns. */
  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (this.numInferenceSteps === null) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    const index = this.stepIndex;
    const isLast = index === this.numInferenceSteps - 1;
    if (!isLast && !rng) throw new Error(`${NAME}: step needs an rng (every step but the last re-noises the sample)`);
    const prevT = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : t;
    const alphaProdT = this.alphaAt(t);
    const alphaProdPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const sqrtAlpha = Math.sqrt(alphaProdT);
    const sqrtBeta = Math.sqrt(1 - alphaProdT);

    // the consistency model's boundary condition, sigma_data = 0.5
    const sigmaData2 = 0.25;
    const scaled = t * this.config.timestep_scaling;
    const cSkip = sigmaData2 / (scaled * scaled + sigmaData2);
    const cOut = scaled / Math.sqrt(scaled * scaled + sigmaData2);

    let x0FromSample: number, x0FromOutput: number;
    if (this.config.prediction_type === 'epsilon') [x0FromSample, x0FromOutput] = [1 / sqrtAlpha, -sqrtBeta / sqrtAlpha];
    else if (this.config.prediction_type === 'v_prediction') [x0FromSample, x0FromOutput] = [sqrtAlpha, -sqrtBeta];
    else [x0FromSample, x0FromOutput] = [0, 1];
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Infinity;

    const noise = isLast ? null : rng!.randn(sample.length);
    if (noise && noise.length !== sample.length) throw new Error(`${NAME}: rng.randn(${sample.length}) returned ${noise.length} values`);
    const toDenoised = Math.sqrt(alphaProdPrev);
    const toNoise = Math.sqrt(1 - alphaProdPrev);
    const prevSample = new Float32Array(sample.length);
    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = Math.min(clip, Math.max(-clip, x0FromSample * x + x0FromOutput * modelOutput[i]));
      const d = cOut * x0 + cSkip * x;
      denoised[i] = d;
      prevSample[i] = noise ? toDenoised * d + toNoise * noise[i] : d;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: denoised };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    if (original.length !== noise.length) {
      throw new Error(`${NAME}: original has ${original.length} values, noise has ${noise.length}`);
    }
    const alphaProd = this.alphaAt(t);
    const a = Math.sqrt(alphaProd);
    const b = Math.sqrt(1 - alphaProd);
    const noisy = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) noisy[i] = a * original[i] + b * noise[i];
    return noisy;
  }

  // the second match when t occurs twice, so that img2img starting mid-schedule skips no step
  // Copied from euler.ts#indexForTimestep
  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    if (index < 0) throw new Error(`${NAME}: timestep ${t} is not one of this schedule's timesteps`);
    return index;
  }

  private alphaAt(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new Error(`${NAME}: timestep must be an integer in 0..${this.alphasCumprod.length - 1} (got ${t})`);
    }
    return this.alphasCumprod[t];
  }
}
