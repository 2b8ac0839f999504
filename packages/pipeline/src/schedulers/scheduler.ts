/**
 * The one interface every scheduler implements (one scheduler per file, after diffusers). Kept apart
 * from index.ts, which imports every scheduler, so that the schedulers importing this never form a cycle.
 */
/** A source of standard normal noise; schedulers that add noise (Euler a, LCM) draw from it in step order. */
export interface Rng {
  randn(n: number): Float32Array;
}

export interface StepResult {
  prevSample: Float32Array;
  /** The model's estimate of the clean sample, where diffusers returns one (LCM: its `denoised`). */
  predOriginalSample?: Float32Array;
}

/** The contract of diffusers' schedulers, for one flat latent at a time. */
export interface Scheduler {
  /** The _class_name. */
  readonly name: string;
  /** Model calls per step; the pipeline skips timesteps[0 .. beginIndex * order) for img2img. */
  readonly order: number;
  /** After setTimesteps: the timesteps to call the model at, in order. */
  timesteps: number[];
  /** Sigma-based schedulers: one per timestep and the final sigma (0 by default). */
  sigmas?: number[];
  /** Scale of the initial noise: pure noise latents are randn * initNoiseSigma. */
  initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Start at timesteps[index] (img2img), as diffusers' set_begin_index; call after setTimesteps. */
  setBeginIndex(index: number): void;
  /** The model input for timestep t: a new array, the sample itself is left as it is. */
  scaleModelInput(sample: Float32Array, t: number): Float32Array;
  /** One denoising step from t; rng is required by the schedulers that add noise. */
  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult;
  /** diffusers' add_noise for a single timestep t: the forward process applied to a clean sample. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array;
}

export type SchedulerConfig = Record<string, unknown>;
