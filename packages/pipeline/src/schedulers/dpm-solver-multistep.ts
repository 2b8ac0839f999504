// DPMSolverMultistepScheduler after diffusers' scheduling_dpmsolver_multistep.py: DPM-Solver (Lu et al.
// 2022) and DPM-Solver++, multistep, in the half-log-SNR lambda = log(alpha_t / sigma_t). With
// algorithm_type "dpmsolver++", solver_order 2 and Karras sigmas this is the "DPM++ 2M Karras" sampler.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, arangeDown, interp, karrasSigmas, linspace, roundHalfEven, sigmaTable, sigmaToT, timestepIndex } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys DPM-Solver reads; a missing or null key takes diffusers' default, shown here. */
export const DPM_SOLVER_MULTISTEP_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** 1, 2 or 3: how many past model outputs each step combines. */
  solver_order: 2,
  /** "epsilon", "v_prediction" or "sample". */
  prediction_type: 'epsilon',
  /** Dynamic thresholding is for pixel-space models and is not supported: only false. */
  thresholding: false,
  /** "dpmsolver++" (data prediction) or "dpmsolver" (noise prediction); the SDE variants are not supported. */
  algorithm_type: 'dpmsolver++',
  /** "midpoint" or "heun": the second-order formula. */
  solver_type: 'midpoint',
  /** Lower-order steps at the end for fewer than 15 steps, which stabilises short schedules. */
  lower_order_final: true,
  /** A first-order (Euler) last step whatever the schedule length. */
  euler_at_final: false,
  /** Karras et al.'s rho = 7 spacing of the sigmas; the timesteps are then rounded to integers. */
  use_karras_sigmas: false,
  /** Not supported: only false. */
  use_exponential_sigmas: false,
  /** Not supported: only false. */
  use_beta_sigmas: false,
  /** Not supported: only false. */
  use_lu_lambdas: false,
  /** Not supported (flow-matching models): only false. */
  use_flow_sigmas: false,
  /** The sigma after the last step: "zero" (needs a "++" algorithm) or "sigma_min". */
  final_sigmas_type: 'zero',
  /** Timesteps whose lambda is below this are left out (for cosine schedules); -Infinity keeps all. */
  lambda_min_clipped: -Infinity,
  /** "learned" / "learned_range" (the model also predicts variances) are not supported: only null. */
  variance_type: null as string | null,
  /** "linspace", "leading" or "trailing". */
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  // Not options of this class, but diffusers keeps them in its config when scheduler_config.json
  // has them (a config written for Euler, say), and its Karras conversion reads them from there.
  sigma_min: null as number | null,
  sigma_max: null as number | null,
};
export type DPMSolverMultistepConfig = typeof DPM_SOLVER_MULTISTEP_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]', sigma_min: 'number', sigma_max: 'number', variance_type: 'string' };

const NAME = 'DPMSolverMultistepScheduler';
const f32 = Math.fround;

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: DPMSolverMultistepConfig;
  /** Integers, descending; with Karras sigmas the last few may repeat. */
  timesteps: number[];
  /** One per timestep plus the final sigma (0 unless final_sigmas_type is "sigma_min"), float32 values. */
  sigmas: number[];
  private readonly alphasCumprod: Float64Array;
  private readonly lambdas: Float64Array;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  // the last solver_order converted model outputs, oldest first; buffers are reused
  private modelOutputs: (Float64Array | null)[] = [];
  private lowerOrderNums = 0;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = readConfig(NAME, DPM_SOLVER_MULTISTEP_DEFAULTS, config, NULLABLE));
    // diffusers maps these aliases onto what it implements
    if (c.algorithm_type === 'deis') c.algorithm_type = 'dpmsolver++';
    if (['logrho', 'bh1', 'bh2'].includes(c.solver_type)) c.solver_type = 'midpoint';
    checkOneOf(NAME, 'algorithm_type', c.algorithm_type, ['dpmsolver++', 'dpmsolver']);
    checkOneOf(NAME, 'solver_type', c.solver_type, ['midpoint', 'heun']);
    checkOneOf(NAME, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    checkOneOf(NAME, 'timestep_spacing', c.timestep_spacing, ['linspace', 'leading', 'trailing']);
    checkOneOf(NAME, 'final_sigmas_type', c.final_sigmas_type, ['zero', 'sigma_min']);
    if (![1, 2, 3].includes(c.solver_order)) throw new Error(`${NAME}: solver_order must be 1, 2 or 3 (got ${c.solver_order})`);
    for (const key of ['thresholding', 'use_exponential_sigmas', 'use_beta_sigmas', 'use_lu_lambdas', 'use_flow_sigmas'] as const) {
      if (c[key]) throw new Error(`${NAME}: ${key} is not supported (got true)`);
    }
    if (c.variance_type !== null) throw new Error(`${NAME}: variance_type is not supported (got "${c.variance_type}")`);
    if (c.algorithm_type === 'dpmsolver' && c.final_sigmas_type === 'zero') {
      throw new Error(`${NAME}: final_sigmas_type "zero" needs algorithm_type "dpmsolver++" (got "dpmsolver"); use "sigma_min"`);
    }
    this.alphasCumprod = alphasCumprod(NAME, c);
    // zero terminal SNR would make the top sigma infinite; diffusers caps it like this
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.lambdas = this.alphasCumprod.map((a) => f32(f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a)))))));
    this.sigmas = sigmaTable(this.alphasCumprod);
    const T = c.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new Error(`${NAME}: numInferenceSteps must be a positive integer (got ${n})`);
    // lambda falls with t; drop the timesteps whose lambda is below lambda_min_clipped
    let clipped = 0;
    while (clipped < T && this.lambdas[T - 1 - clipped] < f32(c.lambda_min_clipped)) clipped++;
    const last = T - clipped;
    let timesteps: number[];
    if (c.timestep_spacing === 'linspace') {
      timesteps = linspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(last / (n + 1));
      timesteps = Array.from({ length: n }, (_, i) => (n - i) * ratio + c.steps_offset);
    } else {
      timesteps = arangeDown(last, T / n).map((t) => roundHalfEven(t) - 1);
    }
    const table = sigmaTable(this.alphasCumprod);
    let sigmas: number[];
    if (c.use_karras_sigmas) {
      const logTable = table.map((s) => f32(Math.log(s)));
      sigmas = karrasSigmas(c.sigma_min ?? table[0], c.sigma_max ?? table[table.length - 1], n);
      timesteps = sigmas.map((s) => sigmaToT(s, logTable));
      // the cosine schedule keeps the fraction, which the int64 cast then truncates
      timesteps = timesteps.map(c.beta_schedule === 'squaredcos_cap_v2' ? Math.trunc : roundHalfEven);
    } else {
      sigmas = timesteps.map((t) => interp(t, table));
    }
    const finalSigma = c.final_sigmas_type === 'sigma_min' ? table[0] : 0;
    this.sigmas = [...sigmas, finalSigma].map(f32);
    this.timesteps = timesteps;
    this.modelOutputs = Array.from({ length: c.solver_order }, () => null);
    this.lowerOrderNums = 0;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (this.modelOutputs.length === 0) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    const c = this.config;
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    const index = this.stepIndex;
    const n = this.timesteps.length;
    if (index + 1 >= this.sigmas.length) throw new Error(`${NAME}: step called after the last timestep (step index ${index})`);
    const lowerOrderFinal = index === n - 1
      && (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === 'zero');
    const lowerOrderSecond = index === n - 2 && c.lower_order_final && n < 15;

    // the model output as the solver wants it: x0 for "++", epsilon otherwise; the oldest buffer is reused
    const oldest = this.modelOutputs.shift();
    const converted = oldest && oldest.length === sample.length ? oldest : new Float64Array(sample.length);
    this.convertModelOutput(modelOutput, sample, converted);
    this.modelOutputs.push(converted);

    let prevSample: Float32Array;
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prevSample = this.firstOrderUpdate(sample);
    } else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prevSample = this.secondOrderUpdate(sample);
    } else {
      prevSample = this.thirdOrderUpdate(sample);
    }
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums += 1;
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

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, into: Float64Array): void {
    const { alpha, sigma } = alphaSigma(this.sigmas[this.stepIndex!]);
    // into = fromSample * x + fromOutput * out
    let fromSample: number, fromOutput: number;
    const p = this.config.prediction_type;
    if (this.config.algorithm_type === 'dpmsolver++') {
      if (p === 'epsilon') [fromSample, fromOutput] = [1 / alpha, -sigma / alpha];
      else if (p === 'v_prediction') [fromSample, fromOutput] = [alpha, -sigma];
      else [fromSample, fromOutput] = [0, 1];
    } else {
      if (p === 'epsilon') [fromSample, fromOutput] = [0, 1];
      else if (p === 'v_prediction') [fromSample, fromOutput] = [sigma, alpha];
      else [fromSample, fromOutput] = [1 / sigma, -alpha / sigma];
    }
    for (let i = 0; i < into.length; i++) into[i] = fromSample * sample[i] + fromOutput * modelOutput[i];
  }

  private lambdaAt(index: number): { alpha: number; sigma: number; lambda: number } {
    const { alpha, sigma } = alphaSigma(this.sigmas[index]);
    return { alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
  }

  private firstOrderUpdate(sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const t = this.lambdaAt(i + 1);
    const s = this.lambdaAt(i);
    // a final sigma of 0 gives lambda = +Infinity: exp(-h) = 0 and the step lands on x0
    const h = t.lambda - s.lambda;
    const [fromSample, fromM0] = this.config.algorithm_type === 'dpmsolver++'
      ? [t.sigma / s.sigma, -t.alpha * (Math.exp(-h) - 1)]
      : [t.alpha / s.alpha, -t.sigma * (Math.exp(h) - 1)];
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < sample.length; k++) prev[k] = fromSample * sample[k] + fromM0 * m0[k];
    return prev;
  }

  private secondOrderUpdate(sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const t = this.lambdaAt(i + 1);
    const s0 = this.lambdaAt(i);
    const s1 = this.lambdaAt(i - 1);
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const h = t.lambda - s0.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    // prev = fromSample * x + cD0 * D0 + cD1 * D1, with D0 = m0 and D1 = (m0 - m1) / r0
    let fromSample: number, cD0: number, cD1: number;
    if (this.config.algorithm_type === 'dpmsolver++') {
      const phi = Math.exp(-h) - 1;
      fromSample = t.sigma / s0.sigma;
      cD0 = -t.alpha * phi;
      cD1 = this.config.solver_type === 'midpoint' ? -0.5 * t.alpha * phi : t.alpha * (phi / h + 1);
    } else {
      const phi = Math.exp(h) - 1;
      fromSample = t.alpha / s0.alpha;
      cD0 = -t.sigma * phi;
      cD1 = this.config.solver_type === 'midpoint' ? -0.5 * t.sigma * phi : -t.sigma * (phi / h - 1);
    }
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < sample.length; k++) {
      prev[k] = fromSample * sample[k] + cD0 * m0[k] + cD1 * ((m0[k] - m1[k]) / r0);
    }
    return prev;
  }

  private thirdOrderUpdate(sample: Float32Array): Float32Array {
    const i = this.stepIndex!;
    const t = this.lambdaAt(i + 1);
    const s0 = this.lambdaAt(i);
    const s1 = this.lambdaAt(i - 1);
    const s2 = this.lambdaAt(i - 2);
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const m2 = this.modelOutputs[this.modelOutputs.length - 3]!;
    const h = t.lambda - s0.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    const r1 = (s1.lambda - s2.lambda) / h;
    // prev = fromSample * x + cD0 * m0 + cD1 * D1 + cD2 * D2
    let fromSample: number, cD0: number, cD1: number, cD2: number;
    if (this.config.algorithm_type === 'dpmsolver++') {
      const phi = Math.exp(-h) - 1;
      fromSample = t.sigma / s0.sigma;
      cD0 = -t.alpha * phi;
      cD1 = t.alpha * (phi / h + 1);
      cD2 = -t.alpha * ((phi + h) / h ** 2 - 0.5);
    } else {
      const phi = Math.exp(h) - 1;
      fromSample = t.alpha / s0.alpha;
      cD0 = -t.sigma * phi;
      cD1 = -t.sigma * (phi / h - 1);
      cD2 = -t.sigma * ((phi - h) / h ** 2 - 0.5);
    }
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < sample.length; k++) {
      const d10 = (m0[k] - m1[k]) / r0;
      const d11 = (m1[k] - m2[k]) / r1;
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (d10 - d11) / (r0 + r1);
      prev[k] = fromSample * sample[k] + cD0 * m0[k] + cD1 * d1 + cD2 * d2;
    }
    return prev;
  }

  // the second match when t occurs twice (Karras timesteps repeat near 0), the last index when absent
  private indexForTimestep(t: number): number {
    const index = timestepIndex(this.timesteps, t);
    return index < 0 ? this.timesteps.length - 1 : index;
  }
}

// VP-SDE coefficients from a sigma of the variance-exploding parametrisation
function alphaSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigma: sigma * alpha };
}
