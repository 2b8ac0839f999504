// KDPM2AncestralDiscreteScheduler after diffusers' scheduling_k_dpm_2_ancestral_discrete.py: k-diffusion's
// sample_dpm_2_ancestral. As KDPM2, each step but the last is two model calls, a half-step to a log-midpoint
// and the whole step with the slope measured there; but the whole step aims at the ancestral sigma_down
// and then adds fresh noise of sigma_up. diffusers draws the noise on both calls and adds it on the second;
// the draws are kept so a seed gives the same image as a generator driven the same way.
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, sigmaToT, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { betaScheduleDefaults, checkSigmaOptions, noiseBySigma, scaleBySigma, sigmaInitNoise, TIMESTEP_SPACING_DEFAULTS, UNSUPPORTED_SIGMA_SPACINGS, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys KDPM2 ancestral reads; a missing or null key takes diffusers' default, shown here. */
export const KDPM2_ANCESTRAL_DEFAULTS = {
  ...betaScheduleDefaults(0.00085, 0.012),
  ...UNSUPPORTED_SIGMA_SPACINGS,
  /** "epsilon" or "v_prediction" (diffusers' KDPM2 ancestral has no "sample"). */
  prediction_type: 'epsilon',
  ...TIMESTEP_SPACING_DEFAULTS,
};
export type KDPM2AncestralConfig = typeof KDPM2_ANCESTRAL_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'KDPM2AncestralDiscreteScheduler';
const f32 = Math.fround;

// diffusers' layout of a per-sigma table: the first, every other one twice, and the last once more
const layOut = (values: number[]) => [values[0], ...values.slice(1).flatMap((v) => [v, v]), values[values.length - 1]];

export class KDPM2AncestralDiscreteScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 2;
  readonly config: KDPM2AncestralConfig;
  /** float32 values: the first timestep, then each midpoint's timestep before the next one's. */
  timesteps: number[] = [];
  /** float32 values, laid out as layOut does. */
  sigmas: number[] = [];
  // the log-midpoints between each sigma and its sigma_down, and the ancestral up / down sigmas
  private sigmasInterpol: number[] = [];
  private sigmasUp: number[] = [];
  private sigmasDown: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the sample at the start of a pair, kept for its second half; null between pairs
  private saved: Float32Array | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, KDPM2_ANCESTRAL_DEFAULTS, config, NULLABLE));
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
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    const timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset).map(f32);
    const table = sigmaTable(this.alphasCumprod);
    const logTable = table.map((s) => f32(Math.log(s)));
    const sigmas = [...timesteps.map((t) => interp(t, table)), 0].map(f32);
    // float32 as torch computes them; the last entries (from sigma 0) are never read
    const up = sigmas.map((s, k) => {
      const next = k + 1 < sigmas.length ? sigmas[k + 1] : 0;
      if (s === 0) return 0;
      const nn = f32(next * next);
      return f32(Math.sqrt(f32(f32(nn * f32(f32(s * s) - nn)) / f32(s * s))));
    });
    const down = sigmas.map((s, k) => {
      const next = k + 1 < sigmas.length ? sigmas[k + 1] : 0;
      return k === sigmas.length - 1 ? 0 : f32(Math.sqrt(f32(f32(next * next) - f32(up[k] * up[k]))));
    });
    // torch's lerp at weight 0.5 from log(sigma) to log(sigma_down): end - (end - start) * 0.5; the last
    // two (to and from sigma 0) are 0
    const mid = sigmas.map((s, k) => {
      if (k >= sigmas.length - 2 || down[k] === 0) return 0;
      const [start, end] = [f32(Math.log(s)), f32(Math.log(down[k]))];
      return f32(Math.exp(f32(end - f32(f32(end - start) * 0.5))));
    });
    this.sigmas = layOut(sigmas);
    this.sigmasInterpol = layOut(mid);
    this.sigmasUp = layOut(up);
    this.sigmasDown = layOut(down);
    const tMid = mid.map((s) => f32(sigmaToT(s, logTable)));
    this.timesteps = [timesteps[0], ...timesteps.slice(1).flatMap((t, k) => [tMid[k], t])];
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
    const sigma = this.saved === null ? this.sigmas[index] : this.sigmasInterpol[index - 1];
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    if (!rng) throw new Error(`${NAME}: step needs an rng for its ancestral noise`);
    this.initStepIndex(t);
    const index = this.stepIndex!;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const first = this.saved === null;
    const j = first ? index : index - 1;
    const [sigma, sigmaMid, sigmaUp, sigmaDown] = [this.sigmas[j], this.sigmasInterpol[j], this.sigmasUp[j], this.sigmasDown[j]];
    const noise = rng.randn(sample.length);
    const sigmaInput = first ? sigma : sigmaMid;
    // x0 = x0FromSample * x + x0FromOutput * out
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigmaInput);
    // first half: slope at sigma, to the midpoint; second: slope at the midpoint, to sigma_down, plus noise
    const dt = first ? sigmaMid - sigma : sigmaDown - sigma;
    const base = first ? sample : this.saved!;
    const noiseScale = first ? 0 : sigmaUp;
    const prevSample = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const x0 = x0FromSample * x + x0FromOutput * modelOutput[i];
      predOriginalSample[i] = x0;
      prevSample[i] = base[i] + ((x - x0) / sigmaInput) * dt + noise[i] * noiseScale;
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
