// DDPMScheduler after diffusers' scheduling_ddpm.py, variance_type "fixed_small": the ancestral sampler of
// "Denoising Diffusion Probabilistic Models". Each step takes the posterior mean from t to
// t - num_train_timesteps / N and adds noise of the posterior variance (none at t = 0).
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, roundHalfEven, spacedTimesteps } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys DDPM reads; a missing or null key takes diffusers' default, shown here. */
export const DDPM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** Only "fixed_small" (the posterior variance, clamped at 1e-20): the others are for models that learn it. */
  variance_type: 'fixed_small',
  /** Clamp the predicted x0 to ±clip_sample_range: for pixel-space models; SD configs set it false. */
  clip_sample: true,
  clip_sample_range: 1.0,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** Dynamic thresholding is for pixel-space models and is not supported: only false. */
  thresholding: false,
  /** "leading", "trailing" or "linspace". */
  timestep_spacing: 'leading',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type DDPMConfig = typeof DDPM_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'DDPMScheduler';

export class DDPMScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: DDPMConfig;
  timesteps: number[];
  private readonly alphasCumprod: Float64Array;
  private numInferenceSteps: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = readConfig(NAME, DDPM_DEFAULTS, config, NULLABLE);
    if (this.config.thresholding) throw new Error(`${NAME}: thresholding is not supported (got true)`);
    checkOneOf(NAME, 'variance_type', this.config.variance_type, ['fixed_small']);
    checkOneOf(NAME, 'prediction_type', this.config.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    checkOneOf(NAME, 'timestep_spacing', this.config.timestep_spacing, ['leading', 'trailing', 'linspace']);
    this.alphasCumprod = alphasCumprod(NAME, this.config);
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

  // DDPM's step is keyed by the timestep alone; diffusers' DDPM has no begin index to set.
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (this.numInferenceSteps === null) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    // diffusers' previous_timestep without custom timesteps: the mean spacing, whatever the grid
    const prevT = t - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const alphaProdT = this.alphaAt(t);
    const alphaProdPrev = prevT >= 0 ? this.alphaAt(prevT) : 1;
    const betaProdT = 1 - alphaProdT;
    const betaProdPrev = 1 - alphaProdPrev;
    const currentAlpha = alphaProdT / alphaProdPrev;
    const currentBeta = 1 - currentAlpha;
    // x0 = x0FromSample * x + x0FromOutput * out
    let x0FromSample: number, x0FromOutput: number;
    if (this.config.prediction_type === 'epsilon') {
      [x0FromSample, x0FromOutput] = [1 / Math.sqrt(alphaProdT), -Math.sqrt(betaProdT) / Math.sqrt(alphaProdT)];
    } else if (this.config.prediction_type === 'v_prediction') {
      [x0FromSample, x0FromOutput] = [Math.sqrt(alphaProdT), -Math.sqrt(betaProdT)];
    } else {
      [x0FromSample, x0FromOutput] = [0, 1];
    }
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Infinity;
    // the posterior mean's coefficients (formula 7 of the DDPM paper)
    const x0Coeff = (Math.sqrt(alphaProdPrev) * currentBeta) / betaProdT;
    const sampleCoeff = (Math.sqrt(currentAlpha) * betaProdPrev) / betaProdT;
    let noise: Float32Array | undefined;
    let std = 0;
    if (t > 0) {
      if (!rng) throw new Error(`${NAME}: step needs an rng (it adds noise)`);
      std = Math.sqrt(Math.max((betaProdPrev / betaProdT) * currentBeta, 1e-20));
      noise = rng.randn(sample.length);
    }
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = Math.min(clip, Math.max(-clip, x0FromSample * x + x0FromOutput * modelOutput[i]));
      predOriginalSample[i] = x0;
      prevSample[i] = x0Coeff * x0 + sampleCoeff * x + (noise ? std * noise[i] : 0);
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
