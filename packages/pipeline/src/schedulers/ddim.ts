// DDIMScheduler after diffusers' scheduling_ddim.py, with eta = 0 (the deterministic sampler of
// "Denoising Diffusion Implicit Models"). Each step jumps from t to t - num_train_timesteps / N.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, roundHalfEven, spacedTimesteps } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys DDIM reads; a missing or null key takes diffusers' default, shown here. */
export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** Clamp the predicted x0 to ±clip_sample_range: for pixel-space models; SD configs set it false. */
  clip_sample: true,
  clip_sample_range: 1.0,
  /** The last step lands on alpha_cumprod = 1 (true) or on alphas_cumprod[0] (false). */
  set_alpha_to_one: true,
  steps_offset: 0,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** Dynamic thresholding is for pixel-space models and is not supported: only false. */
  thresholding: false,
  /** "leading", "trailing" or "linspace". */
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};
export type DDIMConfig = typeof DDIM_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'DDIMScheduler';

export class DDIMScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: DDIMConfig;
  timesteps: number[];
  private readonly alphasCumprod: Float64Array;
  private readonly finalAlphaCumprod: number;
  private numInferenceSteps: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = readConfig(NAME, DDIM_DEFAULTS, config, NULLABLE);
    if (this.config.thresholding) throw new Error(`${NAME}: thresholding is not supported (got true)`);
    checkOneOf(NAME, 'prediction_type', this.config.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    checkOneOf(NAME, 'timestep_spacing', this.config.timestep_spacing, ['leading', 'trailing', 'linspace']);
    this.alphasCumprod = alphasCumprod(NAME, this.config);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const T = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: T, timestep_spacing: spacing, steps_offset: offset } = this.config;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > T) {
      throw new Error(`${NAME}: numInferenceSteps must be an integer in 1..${T} (got ${numInferenceSteps})`);
    }
    const n = numInferenceSteps;
    this.timesteps = spacedTimesteps(spacing, T, n, offset).map(roundHalfEven);
    this.numInferenceSteps = n;
  }

  // DDIM's step is keyed by the timestep alone; diffusers' DDIM has no begin index to set.
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (this.numInferenceSteps === null) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    // diffusers steps by the mean spacing even where trailing/linspace spacing is uneven
    const prevT = t - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const alphaProdT = this.alphaAt(t);
    const alphaProdPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const sqrtAlpha = Math.sqrt(alphaProdT);
    const sqrtBeta = Math.sqrt(1 - alphaProdT);
    // x0 = x0FromSample * x + x0FromOutput * out; eps likewise (eps is never re-derived from a clipped x0)
    let x0FromSample: number, x0FromOutput: number, epsFromSample: number, epsFromOutput: number;
    if (this.config.prediction_type === 'epsilon') {
      [x0FromSample, x0FromOutput, epsFromSample, epsFromOutput] = [1 / sqrtAlpha, -sqrtBeta / sqrtAlpha, 0, 1];
    } else if (this.config.prediction_type === 'v_prediction') {
      [x0FromSample, x0FromOutput, epsFromSample, epsFromOutput] = [sqrtAlpha, -sqrtBeta, sqrtBeta, sqrtAlpha];
    } else {
      [x0FromSample, x0FromOutput, epsFromSample, epsFromOutput] = [0, 1, 1 / sqrtBeta, -sqrtAlpha / sqrtBeta];
    }
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Infinity;
    const toX0 = Math.sqrt(alphaProdPrev);
    const toEps = Math.sqrt(1 - alphaProdPrev);
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const out = modelOutput[i];
      const x0 = Math.min(clip, Math.max(-clip, x0FromSample * x + x0FromOutput * out));
      predOriginalSample[i] = x0;
      prevSample[i] = toX0 * x0 + toEps * (epsFromSample * x + epsFromOutput * out);
    }
    return { prevSample, predOriginalSample };
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

  private alphaAt(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new Error(`${NAME}: timestep must be an integer in 0..${this.alphasCumprod.length - 1} (got ${t})`);
    }
    return this.alphasCumprod[t];
  }
}
