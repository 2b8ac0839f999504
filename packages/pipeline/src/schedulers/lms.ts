// LMSDiscreteScheduler after diffusers' scheduling_lms_discrete.py: k-diffusion's linear multistep method
// (sample_lms). Each step combines the last four ODE slopes, each weighted by the integral over the step
// of its Lagrange basis polynomial in sigma. diffusers integrates numerically (scipy's quad); the
// polynomial is of degree 3 at most, so three-point Gauss-Legendre gives the same integral exactly.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { betaScheduleDefaults, checkSigmaOptions, noiseBySigma, scaleBySigma, sigmaInitNoise, TIMESTEP_SPACING_DEFAULTS, UNSUPPORTED_SIGMA_SPACINGS, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys LMS reads; a missing or null key takes diffusers' default, shown here. */
export const LMS_DEFAULTS = {
  ...betaScheduleDefaults(0.0001, 0.02),
  ...UNSUPPORTED_SIGMA_SPACINGS,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  ...TIMESTEP_SPACING_DEFAULTS,
};
export type LMSConfig = typeof LMS_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'LMSDiscreteScheduler';
const f32 = Math.fround;
/** diffusers' step(order=4), which its pipelines never change. */
const LMS_ORDER = 4;
// Gauss-Legendre nodes and weights on [-1, 1], exact for polynomials up to degree 5
const GAUSS_NODES = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
const GAUSS_WEIGHTS = [5 / 9, 8 / 9, 5 / 9];

export class LMSDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly config: LMSConfig;
  /** float32 values, descending. */
  timesteps: number[] = [];
  /** float32 values: one per timestep and the final 0. */
  sigmas: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the last LMS_ORDER slopes, oldest first
  private derivatives: Float64Array[] = [];

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, LMS_DEFAULTS, config, NULLABLE));
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
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    const timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset).map(f32);
    const table = sigmaTable(this.alphasCumprod);
    this.sigmas = [...timesteps.map((t) => interp(t, table)), 0].map(f32);
    this.timesteps = timesteps;
    this.derivatives = [];
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
    const sigma = this.sigmas[index];
    // x0 = x0FromSample * x + x0FromOutput * out
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigma);
    const derivative = this.derivatives.length === LMS_ORDER ? this.derivatives.shift()! : new Float64Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x0 = x0FromSample * sample[i] + x0FromOutput * modelOutput[i];
      predOriginalSample[i] = x0;
      derivative[i] = (sample[i] - x0) / sigma;
    }
    this.derivatives.push(derivative);
    // The order follows the step index, not the slopes kept: from an img2img begin index diffusers asks
    // for a higher order than it has slopes and uses only as many coefficients as it has slopes.
    const order = Math.min(index + 1, LMS_ORDER);
    const used = Math.min(order, this.derivatives.length);
    const coefficients = Array.from({ length: used }, (_, k) => this.coefficient(order, index, k));
    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      let x = sample[i];
      for (let k = 0; k < used; k++) x += coefficients[k] * this.derivatives[this.derivatives.length - 1 - k][i];
      prevSample[i] = x;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    return noiseBySigma(NAME, original, noise, this.sigmas[index]);
  }

  // ∫ from sigmas[i] to sigmas[i + 1] of the basis polynomial of sigmas[i - current] among
  // sigmas[i], sigmas[i - 1], ..., sigmas[i - order + 1]
  private coefficient(order: number, i: number, current: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let product = 1;
      for (let k = 0; k < order; k++) if (k !== current) product *= (tau - s[i - k]) / (s[i - current] - s[i - k]);
      return product;
    };
    const [a, b] = [s[i], s[i + 1]];
    const [half, centre] = [(b - a) / 2, (a + b) / 2];
    let sum = 0;
    for (let g = 0; g < GAUSS_NODES.length; g++) sum += GAUSS_WEIGHTS[g] * basis(centre + half * GAUSS_NODES[g]);
    return sum * half;
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
