// FlowMatchEulerDiscreteScheduler after diffusers' scheduling_flow_match_euler_discrete.py (SD3): the
// model predicts the velocity of the rectified flow x_sigma = (1 - sigma) x0 + sigma noise, and each step
// is Euler's x += (sigma_next - sigma) * v. Sigmas are shifted towards noise by `shift`.
import type { Scheduler, StepResult } from './scheduler';
import { linspace, timestepIndex } from './noise-schedule';
import { readConfig } from './scheduler-config';

/** The scheduler_config.json keys it reads; a missing or null key takes diffusers' default, shown here. */
export const FLOW_MATCH_DEFAULTS = {
  num_train_timesteps: 1000,
  /** Moves the schedule towards high noise: sigma' = shift sigma / (1 + (shift - 1) sigma). SD3 uses 3. */
  shift: 1.0,
  /** Not supported (resolution-dependent shift, for Flux): only false. */
  use_dynamic_shifting: false,
  /** Not supported: only false / null. */
  invert_sigmas: false,
  shift_terminal: null as number | null,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  stochastic_sampling: false,
};
export type FlowMatchConfig = typeof FLOW_MATCH_DEFAULTS;

const NAME = 'FlowMatchEulerDiscreteScheduler';
const f32 = Math.fround;

export class FlowMatchEulerDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly config: FlowMatchConfig;
  /** sigma * num_train_timesteps, float32 values, as the transformer takes them. */
  timesteps: number[] = [];
  /** One per timestep plus the final 0, float32 values. */
  sigmas: number[] = [];
  /** Flow matching starts from pure noise: latents are randn as they are. */
  readonly initNoiseSigma = 1;
  private readonly sigmaMin: number;
  private readonly sigmaMax: number;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, FLOW_MATCH_DEFAULTS, config, { shift_terminal: 'number' }));
    for (const key of ['use_dynamic_shifting', 'invert_sigmas', 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'stochastic_sampling'] as const) {
      if (c[key]) throw new Error(`${NAME}: ${key} = true is not supported`);
    }
    if (c.shift_terminal !== null) throw new Error(`${NAME}: shift_terminal is not supported`);
    // The training schedule, in float32 as diffusers holds it: (n .. 1) / n, shifted once.
    const n = c.num_train_timesteps;
    const shift = f32(c.shift);
    const shiftMinusOne = f32(c.shift - 1);
    const shifted = (i: number) => {
      const sigma = f32(f32(n - i) / n);
      return f32(f32(shift * sigma) / f32(1 + f32(shiftMinusOne * sigma)));
    };
    this.sigmaMax = shifted(0);
    this.sigmaMin = shifted(n - 1);
  }

  setTimesteps(numInferenceSteps: number): void {
    const n = this.config.num_train_timesteps;
    const shift = this.config.shift;
    // As diffusers does, in float64: timesteps evenly spaced between the (already shifted) ends, back to
    // sigmas, shifted again, then float32.
    const sigmas = linspace(this.sigmaMax * n, this.sigmaMin * n, numInferenceSteps).map((t) => {
      const sigma = t / n;
      return f32((shift * sigma) / (1 + (shift - 1) * sigma));
    });
    this.timesteps = sigmas.map((s) => f32(s * n));
    this.sigmas = [...sigmas, 0];
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return Float32Array.from(sample);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    const index = this.stepIndex;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const dt = f32(this.sigmas[index + 1] - this.sigmas[index]);
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) prevSample[i] = sample[i] + f32(dt * modelOutput[i]);
    this.stepIndex = index + 1;
    return { prevSample };
  }

  /** diffusers' scale_noise: (1 - sigma) x0 + sigma noise at timestep t's sigma. */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    if (original.length !== noise.length) {
      throw new Error(`${NAME}: original has ${original.length} values, noise has ${noise.length}`);
    }
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    const sigma = this.sigmas[index];
    const keep = f32(1 - sigma);
    const noisy = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) noisy[i] = f32(sigma * noise[i]) + f32(keep * original[i]);
    return noisy;
  }

  // Copied from euler.ts#indexForTimestep
  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    if (index < 0) throw new Error(`${NAME}: timestep ${t} is not one of this schedule's timesteps`);
    return index;
  }
}
