// The arithmetic every sigma scheduler (Euler, Euler a, Heun, KDPM2 and its ancestral, LMS, DPM-Solver
// SDE) shares with k-diffusion: the model input scaled by its sigma, the forward process, the initial
// noise scale, x0 from the model output, and the config keys they all read. The steps themselves stay
// one per scheduler file.
import { checkOneOf } from './scheduler-config';

/** The model input at sigma: x / sqrt(sigma² + 1), in a new array. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const scale = 1 / Math.sqrt(sigma * sigma + 1);
  const scaled = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) scaled[i] = sample[i] * scale;
  return scaled;
}

/** add_noise of the sigma schedulers: original + noise * sigma. `name` is the scheduler class, for errors. */
export function noiseBySigma(name: string, original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  if (original.length !== noise.length) throw new Error(`${name}: original has ${original.length} values, noise has ${noise.length}`);
  const noisy = new Float32Array(original.length);
  for (let i = 0; i < original.length; i++) noisy[i] = original[i] + noise[i] * sigma;
  return noisy;
}

/** init_noise_sigma: the largest sigma, or sqrt(sigma² + 1) with leading spacing (whose first timestep is below the top). */
export function sigmaInitNoise(sigmas: readonly number[], timestepSpacing: string): number {
  const max = Math.max(...sigmas);
  return timestepSpacing === 'leading' ? Math.sqrt(max * max + 1) : max;
}

/** [fromSample, fromOutput] with x0 = fromSample * x + fromOutput * out, for a prediction type at sigma. */
export function x0Coefficients(predictionType: string, sigma: number): [number, number] {
  if (predictionType === 'epsilon') return [1, -sigma];
  if (predictionType === 'v_prediction') return [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
  return [0, 1];
}

/** The scheduler_config.json keys of the beta schedule, with the class's diffusers defaults for the betas. */
export function betaScheduleDefaults(betaStart: number, betaEnd: number) {
  return {
    num_train_timesteps: 1000,
    beta_start: betaStart,
    beta_end: betaEnd,
    /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
    beta_schedule: 'linear',
    /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
    trained_betas: null as number[] | null,
  };
}

/** Karras, exponential and beta sigma spacings: options of these classes sdq does not implement (only false). */
export const UNSUPPORTED_SIGMA_SPACINGS = { use_karras_sigmas: false, use_exponential_sigmas: false, use_beta_sigmas: false };

export const TIMESTEP_SPACING_DEFAULTS = {
  /** "linspace", "leading" or "trailing". */
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

/** The timestep spacing is one diffusers has, and no unsupported sigma spacing is on. */
export function checkSigmaOptions(name: string, c: { timestep_spacing: string } & typeof UNSUPPORTED_SIGMA_SPACINGS): void {
  checkOneOf(name, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
  if (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas) throw new Error(`${name}: karras, exponential and beta sigmas are not supported`);
}
