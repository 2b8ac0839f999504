// DPMSolverSDEScheduler after diffusers' scheduling_dpmsolver_sde.py: k-diffusion's sample_dpmpp_sde
// (DPM-Solver++ SDE with a midpoint ratio of 0.5), Stability's K_DPMPP_SDE. Each step but the last is two
// model calls: an ancestral DPM-Solver++ step to the log-midpoint sigma, then the whole step from the
// same start with the midpoint's x0, each adding noise of its sigma_up. The last step (to sigma 0) is Euler.
//
// The noise. diffusers draws it from a torchsde Brownian tree seeded once per run: each draw is the
// Brownian increment between the step's two sigmas, divided by the square root of their distance, so a
// standard normal. torchsde is not available to sdq, so each draw here is rng.randn (the job's seeded
// generator) of the latent's size, one per half-step that adds noise, in step order. The same seed and
// settings give the same image in sdq, but not the image diffusers draws from its tree.
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, sigmaTable, sigmaToT, spacedTimesteps, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';
import { betaScheduleDefaults, checkSigmaOptions, noiseBySigma, scaleBySigma, sigmaInitNoise, TIMESTEP_SPACING_DEFAULTS, UNSUPPORTED_SIGMA_SPACINGS, x0Coefficients } from './sigma-steps';

/** The scheduler_config.json keys DPM-Solver SDE reads; a missing or null key takes diffusers' default, shown here. */
export const DPM_SOLVER_SDE_DEFAULTS = {
  ...betaScheduleDefaults(0.00085, 0.012),
  /** "epsilon" or "v_prediction" (diffusers' DPM-Solver SDE has no "sample"). */
  prediction_type: 'epsilon',
  ...UNSUPPORTED_SIGMA_SPACINGS,
  ...TIMESTEP_SPACING_DEFAULTS,
};
export type DPMSolverSDEConfig = typeof DPM_SOLVER_SDE_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'DPMSolverSDEScheduler';
const f32 = Math.fround;

export class DPMSolverSDEScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 2;
  readonly config: DPMSolverSDEConfig;
  /** float64 values, as diffusers keeps them here: each step's timestep, then its midpoint's. */
  timesteps: number[] = [];
  /** float32 values: the first sigma, every other one but the final 0 twice, then 0. */
  sigmas: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the sample at the start of a pair and the midpoint sigma, kept for its second half; null between pairs
  private saved: Float32Array | null = null;
  private midSigma = 0;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, DPM_SOLVER_SDE_DEFAULTS, config, NULLABLE));
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
    const timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset);
    const table = sigmaTable(this.alphasCumprod);
    const logTable = table.map((s) => f32(Math.log(s)));
    const sigmas = timesteps.map((t) => interp(t, table));
    // each midpoint, halfway in -log(sigma), found back in the table as a fractional timestep
    const midpoints = sigmas.slice(0, -1).map((s, k) => sigmaToT(Math.exp(-(-Math.log(s) + (Math.log(s) - Math.log(sigmas[k + 1])) * 0.5)), logTable));
    const s32 = [...sigmas, 0].map(f32);
    this.sigmas = [s32[0], ...s32.slice(1, -1).flatMap((s) => [s, s]), 0];
    this.timesteps = [timesteps[0], ...timesteps.slice(1).flatMap((t, k) => [midpoints[k], t])];
    this.saved = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    this.initStepIndex(t);
    const sigma = this.saved === null ? this.sigmas[this.stepIndex!] : this.midSigma;
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    if (!rng) throw new Error(`${NAME}: step needs an rng for its noise`);
    this.initStepIndex(t);
    const index = this.stepIndex!;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const first = this.saved === null;
    const [sigma, sigmaNext] = first ? [this.sigmas[index], this.sigmas[index + 1]] : [this.sigmas[index - 1], this.sigmas[index]];
    // k-diffusion's time is -log(sigma)
    const tNow = -Math.log(sigma);
    const tMid = tNow + (-Math.log(sigmaNext) - tNow) * 0.5;
    const sigmaInput = first ? sigma : Math.exp(-tMid);
    const [x0FromSample, x0FromOutput] = x0Coefficients(this.config.prediction_type, sigmaInput);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) predOriginalSample[i] = x0FromSample * sample[i] + x0FromOutput * modelOutput[i];
    const prevSample = new Float32Array(sample.length);
    this.stepIndex = index + 1;

    if (sigmaNext === 0) {
      // the last step: Euler to 0, no noise
      for (let i = 0; i < sample.length; i++) prevSample[i] = sample[i] + ((sample[i] - predOriginalSample[i]) / sigma) * (sigmaNext - sigma);
      return { prevSample, predOriginalSample };
    }
    const tTo = first ? tMid : -Math.log(sigmaNext);
    const base = first ? sample : this.saved!;
    const [sigmaFrom, sigmaTo] = [Math.exp(-tNow), Math.exp(-tTo)];
    const sigmaUp = Math.min(sigmaTo, Math.sqrt((sigmaTo ** 2 * (sigmaFrom ** 2 - sigmaTo ** 2)) / sigmaFrom ** 2));
    const sigmaDown = Math.sqrt(sigmaTo ** 2 - sigmaUp ** 2);
    const tAncestral = -Math.log(sigmaDown);
    const fromSample = Math.exp(-tAncestral) / Math.exp(-tNow);
    const fromX0 = -Math.expm1(tNow - tAncestral);
    const noise = rng.randn(sample.length);
    for (let i = 0; i < sample.length; i++) prevSample[i] = fromSample * base[i] + fromX0 * predOriginalSample[i] + noise[i] * sigmaUp;
    if (first) {
      this.saved = sample.slice();
      this.midSigma = sigmaTo;
    } else {
      this.saved = null;
    }
    return { prevSample, predOriginalSample };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    // diffusers' DPM-Solver SDE takes the begin index whenever one is set, even after steps have run, which
    // would blend a mask's known area at the first step's noise on every step; sdq takes the current step
    // as diffusers' other sigma schedulers do (the same before the first step, as img2img calls it).
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
