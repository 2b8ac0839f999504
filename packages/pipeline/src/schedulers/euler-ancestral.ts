// EulerAncestralDiscreteScheduler after diffusers' scheduling_euler_ancestral_discrete.py: an Euler
// step down to sigma_down, then fresh noise of scale sigma_up, so that sigma_down² + sigma_up² is the
// next sigma². Every step draws noise (the last one with sigma_up = 0), as diffusers does.
import type { Rng, Scheduler, StepResult } from './index';

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
    const c = (this.config = readConfig(config));
    checkOneOf('prediction_type', c.prediction_type, ['epsilon', 'v_prediction']);
    checkOneOf('timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    this.alphasCumprod = alphasCumprod(c);
    // zero terminal SNR would make the top sigma infinite; diffusers caps it like this
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.sigmas = sigmaTable(this.alphasCumprod).reverse().concat(0);
    const T = c.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** The largest sigma, or sqrt(sigma² + 1) with leading spacing (whose first timestep is below the top). */
  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    return this.config.timestep_spacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    let timesteps: number[];
    if (c.timestep_spacing === 'linspace') {
      timesteps = linspace(0, T - 1, n).reverse();
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(T / n);
      timesteps = Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + c.steps_offset);
    } else {
      timesteps = arangeDown(T, T / n).map((t) => roundHalfEven(t) - 1);
    }
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
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    const scaled = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) scaled[i] = sample[i] * scale;
    return scaled;
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
    const [x0FromSample, x0FromOutput] = this.config.prediction_type === 'epsilon'
      ? [1, -sigma]
      : [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
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
    if (original.length !== noise.length) {
      throw new Error(`${NAME}: original has ${original.length} values, noise has ${noise.length}`);
    }
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    const sigma = this.sigmas[index];
    const noisy = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) noisy[i] = original[i] + noise[i] * sigma;
    return noisy;
  }

  // the second match when t occurs twice, so that img2img starting mid-schedule skips no sigma
  private indexForTimestep(t: number): number {
    const first = this.timesteps.indexOf(t);
    if (first < 0) throw new Error(`${NAME}: timestep ${t} is not one of this schedule's timesteps`);
    const second = this.timesteps.indexOf(t, first + 1);
    return second < 0 ? first : second;
  }

  private initStepIndex(t: number): void {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
  }
}

// ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32, ascending with t
function sigmaTable(alphasCumprod: Float64Array): number[] {
  return Array.from(alphasCumprod, (a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

// numpy.interp at t over the table indexed 0..len-1
function interp(t: number, table: number[]): number {
  if (t <= 0) return table[0];
  if (t >= table.length - 1) return table[table.length - 1];
  const j = Math.floor(t);
  return (table[j + 1] - table[j]) * (t - j) + table[j];
}

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

// unknown keys are ignored; a missing or null key keeps its default
function readConfig(config: Record<string, unknown>): EulerAncestralConfig {
  const out: Record<string, unknown> = { ...EULER_ANCESTRAL_DEFAULTS };
  for (const [key, fallback] of Object.entries(EULER_ANCESTRAL_DEFAULTS)) {
    const value = config[key];
    if (value === undefined || value === null) continue;
    const type = fallback === null ? NULLABLE[key] : typeof fallback;
    const ok = type === 'number[]' ? Array.isArray(value) && value.every((v) => typeof v === 'number') : typeof value === type;
    if (!ok) throw new Error(`${NAME}: ${key} must be ${type === 'number[]' ? 'an array of numbers' : `a ${type}`} (got ${JSON.stringify(value)})`);
    out[key] = value;
  }
  return out as EulerAncestralConfig;
}

function checkOneOf(key: string, value: string, allowed: string[]): void {
  if (!allowed.includes(value)) throw new Error(`${NAME}: ${key} must be one of ${allowed.join(', ')} (got "${value}")`);
}

// alphas_cumprod exactly as diffusers holds it: float32 betas (torch.linspace in float32), a cumulative
// product accumulated in double and stored as float32, as torch's CPU cumprod does.
function alphasCumprod(c: EulerAncestralConfig): Float64Array {
  const T = c.num_train_timesteps;
  let betas: Float64Array;
  if (c.trained_betas) {
    if (c.trained_betas.length !== T) throw new Error(`${NAME}: trained_betas must have num_train_timesteps = ${T} values (got ${c.trained_betas.length})`);
    betas = Float64Array.from(c.trained_betas, f32);
  } else if (c.beta_schedule === 'linear') {
    betas = linspaceF32(c.beta_start, c.beta_end, T);
  } else if (c.beta_schedule === 'scaled_linear') {
    betas = linspaceF32(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end), T).map((b) => f32(b * b));
  } else if (c.beta_schedule === 'squaredcos_cap_v2') {
    const alphaBar = (x: number) => Math.cos(((x + 0.008) / 1.008) * Math.PI / 2) ** 2;
    betas = Float64Array.from({ length: T }, (_, i) => f32(Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999)));
  } else {
    throw new Error(`${NAME}: beta_schedule must be one of linear, scaled_linear, squaredcos_cap_v2 (got "${c.beta_schedule}")`);
  }
  if (c.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return cumprodF32(betas);
}

function cumprodF32(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= f32(1 - betas[i]);
    out[i] = f32(product);
  }
  return out;
}

// "Common Diffusion Noise Schedules and Sample Steps are Flawed": shift sqrt(alphas_cumprod) so the
// last timestep has zero SNR, in float32 like diffusers.
function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const root = cumprodF32(betas).map((a) => f32(Math.sqrt(a)));
  const first = root[0];
  const last = root[root.length - 1];
  const scale = f32(first / f32(first - last));
  const alphaBar = root.map((r) => {
    const shifted = f32(f32(r - last) * scale);
    return f32(shifted * shifted);
  });
  return alphaBar.map((a, i) => f32(1 - (i === 0 ? a : f32(a / alphaBar[i - 1]))));
}

// torch.linspace(start, end, steps, dtype=float32) on CPU: a float32 step, filled from both ends
function linspaceF32(start: number, end: number, steps: number): Float64Array {
  const [s, e] = [f32(start), f32(end)];
  if (steps === 1) return Float64Array.of(s);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Float64Array.from({ length: steps }, (_, i) => (i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)))));
}

// numpy.linspace(start, stop, num): i * step + start, with the last value pinned to stop
function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === 0 ? start : i === num - 1 ? stop : i * step + start));
}

// numpy.arange(start, 0, -step) for a float step, including numpy's length rule and fill arithmetic
function arangeDown(start: number, step: number): number[] {
  const length = Math.ceil((0 - start) / -step);
  const delta = start - step - start;
  return Array.from({ length }, (_, i) => start + i * delta);
}

// numpy rounds halves to even (166.5 -> 166); Math.round would not
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
