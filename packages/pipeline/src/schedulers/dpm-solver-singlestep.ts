// DPMSolverSinglestepScheduler after diffusers' scheduling_dpmsolver_singlestep.py, orders 1 and 2:
// DPM-Solver++ taken in pairs of steps, the first of a pair a first-order step from the pair's start and
// the second a second-order update from that same start with both model outputs ("2S"). With
// algorithm_type "sde-dpmsolver++" every update adds fresh noise, which makes it Stability's ancestral
// K_DPMPP_2S_ANCESTRAL.
import type { Rng, Scheduler, StepResult } from './scheduler';
import { alphasCumprod, interp, linspace, roundHalfEven, sigmaTable, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys the singlestep solver reads; a missing or null key takes diffusers' default, shown here. */
export const DPM_SOLVER_SINGLESTEP_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** 1 or 2 (diffusers' third order is not implemented here). */
  solver_order: 2,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** Dynamic thresholding is for pixel-space models and is not supported: only false. */
  thresholding: false,
  /** "dpmsolver++" or "sde-dpmsolver++" (the noise-prediction variants are not supported). */
  algorithm_type: 'dpmsolver++',
  /** "midpoint" or "heun": the second-order formula. */
  solver_type: 'midpoint',
  /** A first-order last step; diffusers turns it on by itself for a zero final sigma or an odd step count. */
  lower_order_final: false,
  /** Not supported: only false. */
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  use_flow_sigmas: false,
  /** The sigma after the last step: "zero" or "sigma_min". */
  final_sigmas_type: 'zero',
  /** Timesteps whose lambda is below this are left out (for cosine schedules); -Infinity keeps all. */
  lambda_min_clipped: -Infinity,
  /** "learned" / "learned_range" are not supported: only null. */
  variance_type: null as string | null,
};
export type DPMSolverSinglestepConfig = typeof DPM_SOLVER_SINGLESTEP_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]', variance_type: 'string' };

const NAME = 'DPMSolverSinglestepScheduler';
const f32 = Math.fround;

export class DPMSolverSinglestepScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: DPMSolverSinglestepConfig;
  /** Integers, descending. */
  timesteps: number[] = [];
  /** One per timestep plus the final sigma, float32 values. */
  sigmas: number[] = [];
  private readonly alphasCumprod: Float64Array;
  private readonly lambdas: Float64Array;
  private orders: number[] = [];
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the last solver_order converted model outputs (x0 predictions), oldest first
  private modelOutputs: (Float64Array | null)[] = [];
  // the sample at the start of the current pair
  private pairStart: Float32Array | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, DPM_SOLVER_SINGLESTEP_DEFAULTS, config, NULLABLE));
    // diffusers maps these aliases onto what it implements
    if (c.algorithm_type === 'deis') c.algorithm_type = 'dpmsolver++';
    if (['logrho', 'bh1', 'bh2'].includes(c.solver_type)) c.solver_type = 'midpoint';
    checkOneOf(NAME, 'algorithm_type', c.algorithm_type, ['dpmsolver++', 'sde-dpmsolver++']);
    checkOneOf(NAME, 'solver_type', c.solver_type, ['midpoint', 'heun']);
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    checkOneOf(NAME, 'final_sigmas_type', c.final_sigmas_type, ['zero', 'sigma_min']);
    if (![1, 2].includes(c.solver_order)) throw new Error(`${NAME}: solver_order must be 1 or 2 (got ${c.solver_order})`);
    for (const key of ['thresholding', 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'use_flow_sigmas'] as const) {
      if (c[key]) throw new Error(`${NAME}: ${key} is not supported (got true)`);
    }
    if (c.variance_type !== null) throw new Error(`${NAME}: variance_type is not supported (got "${c.variance_type}")`);
    this.alphasCumprod = alphasCumprod(NAME, c);
    this.lambdas = this.alphasCumprod.map((a) => f32(f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a)))))));
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    // lambda falls with t; drop the timesteps whose lambda is below lambda_min_clipped
    let clipped = 0;
    while (clipped < T && this.lambdas[T - 1 - clipped] < f32(c.lambda_min_clipped)) clipped++;
    const timesteps = linspace(0, T - 1 - clipped, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    const table = sigmaTable(this.alphasCumprod);
    const finalSigma = c.final_sigmas_type === 'sigma_min' ? table[0] : 0;
    this.sigmas = [...timesteps.map((t) => interp(t, table)), finalSigma].map(f32);
    this.timesteps = timesteps;
    // diffusers turns lower_order_final on (for good) where the pairs would not end on a first-order step
    if (!c.lower_order_final && (n % c.solver_order !== 0 || c.final_sigmas_type === 'zero')) c.lower_order_final = true;
    this.orders = orderList(n, c.solver_order, c.lower_order_final);
    this.modelOutputs = Array.from({ length: c.solver_order }, () => null);
    this.pairStart = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: Rng): StepResult {
    if (this.modelOutputs.length === 0) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    const sde = this.config.algorithm_type === 'sde-dpmsolver++';
    if (sde && !rng) throw new Error(`${NAME}: step needs an rng for the sde-dpmsolver++ noise`);
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    const index = this.stepIndex;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);

    const m = this.convertModelOutput(modelOutput, sample);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    const noise = sde ? rng!.randn(sample.length) : null;
    // img2img may start on the second step of a pair, with no first output to pair it with
    let order = this.orders[index];
    while (this.modelOutputs[this.modelOutputs.length - order] === null) order--;
    if (order === 1) this.pairStart = sample.slice();
    const prevSample = order === 1 ? this.firstOrderUpdate(noise) : this.secondOrderUpdate(noise);
    this.stepIndex = index + 1;
    return { prevSample };
  }

  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    if (original.length !== noise.length) {
      throw new Error(`${NAME}: original has ${original.length} values, noise has ${noise.length}`);
    }
    const index = this.beginIndex === null ? this.indexForTimestep(t) : (this.stepIndex ?? this.beginIndex);
    const { alpha, sigma } = alphaSigma(this.sigmas[index]);
    const noisy = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) noisy[i] = alpha * original[i] + sigma * noise[i];
    return noisy;
  }

  // the model output as DPM-Solver++ wants it: the predicted x0
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array): Float64Array {
    const { alpha, sigma } = alphaSigma(this.sigmas[this.stepIndex!]);
    const p = this.config.prediction_type;
    const [fromSample, fromOutput] = p === 'epsilon' ? [1 / alpha, -sigma / alpha] : p === 'v_prediction' ? [alpha, -sigma] : [0, 1];
    const x0 = new Float64Array(sample.length);
    for (let i = 0; i < x0.length; i++) x0[i] = fromSample * sample[i] + fromOutput * modelOutput[i];
    return x0;
  }

  private lambdaAt(index: number): { alpha: number; sigma: number; lambda: number } {
    const { alpha, sigma } = alphaSigma(this.sigmas[index]);
    return { alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
  }

  private firstOrderUpdate(noise: Float32Array | null): Float32Array {
    const i = this.stepIndex!;
    const t = this.lambdaAt(i + 1);
    const s = this.lambdaAt(i);
    // a final sigma of 0 gives lambda = +Infinity: exp(-h) = 0 and the step lands on x0
    const h = t.lambda - s.lambda;
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const x = this.pairStart!;
    const prev = new Float32Array(x.length);
    if (noise) {
      const fromSample = (t.sigma / s.sigma) * Math.exp(-h);
      const fromM0 = t.alpha * (1 - Math.exp(-2 * h));
      const fromNoise = t.sigma * Math.sqrt(1 - Math.exp(-2 * h));
      for (let k = 0; k < x.length; k++) prev[k] = fromSample * x[k] + fromM0 * m0[k] + fromNoise * noise[k];
    } else {
      const fromSample = t.sigma / s.sigma;
      const fromM0 = -t.alpha * (Math.exp(-h) - 1);
      for (let k = 0; k < x.length; k++) prev[k] = fromSample * x[k] + fromM0 * m0[k];
    }
    return prev;
  }

  // From the pair's start s1 (with output m1) to t, using the output m0 at the pair's middle s0.
  private secondOrderUpdate(noise: Float32Array | null): Float32Array {
    const i = this.stepIndex!;
    const t = this.lambdaAt(i + 1);
    const s0 = this.lambdaAt(i);
    const s1 = this.lambdaAt(i - 1);
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const h = t.lambda - s1.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    const heun = this.config.solver_type === 'heun';
    // prev = fromSample * x + cD0 * D0 + cD1 * D1 + fromNoise * noise, with D0 = m1 and D1 = (m0 - m1) / r0
    let fromSample: number, cD0: number, cD1: number, fromNoise = 0;
    if (noise) {
      const e = 1 - Math.exp(-2 * h);
      fromSample = (t.sigma / s1.sigma) * Math.exp(-h);
      cD0 = t.alpha * e;
      cD1 = heun ? t.alpha * (e / (-2 * h) + 1) : 0.5 * t.alpha * e;
      fromNoise = t.sigma * Math.sqrt(e);
    } else {
      const phi = Math.exp(-h) - 1;
      fromSample = t.sigma / s1.sigma;
      cD0 = -t.alpha * phi;
      cD1 = heun ? t.alpha * (phi / h + 1) : -0.5 * t.alpha * phi;
    }
    const x = this.pairStart!;
    const prev = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      prev[k] = fromSample * x[k] + cD0 * m1[k] + cD1 * ((m0[k] - m1[k]) / r0) + (noise ? fromNoise * noise[k] : 0);
    }
    return prev;
  }

  // the second match when t occurs twice, the last index when absent (as diffusers)
  // Copied from dpm-solver-multistep.ts#indexForTimestep
  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    return index < 0 ? this.timesteps.length - 1 : index;
  }
}

// diffusers' get_order_list for orders 1 and 2: pairs [1, 2], ending on a first-order step when asked
function orderList(steps: number, order: number, lowerOrderFinal: boolean): number[] {
  if (order === 1) return Array(steps).fill(1);
  const pairs = (count: number) => Array.from({ length: count }, () => [1, 2]).flat();
  if (!lowerOrderFinal) return pairs(Math.floor(steps / 2));
  return steps % 2 === 0 ? [...pairs(steps / 2 - 1), 1, 1] : [...pairs(Math.floor(steps / 2)), 1];
}

// VP-SDE coefficients from a sigma of the variance-exploding parametrisation
function alphaSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigma: sigma * alpha };
}
