// PNDMScheduler after diffusers' scheduling_pndm.py ("Pseudo Numerical Methods for Diffusion Models").
// With skip_prk_steps (every Stable Diffusion config) it is PLMS: a linear multistep method that
// reuses up to four past model outputs and repeats the second-to-last timestep once to warm up.
// Without it, the first three steps are Runge-Kutta (PRK) steps of four model calls each.
import type { Scheduler, StepResult } from './scheduler';
import { alphasCumprod, arangeDown, linspace, roundHalfEven } from './noise-schedule';
import { checkOneOf, readConfig } from './scheduler-config';

/** The scheduler_config.json keys PNDM reads; a missing or null key takes diffusers' default, shown here. */
export const PNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  /** "linear", "scaled_linear" or "squaredcos_cap_v2". */
  beta_schedule: 'linear',
  /** Betas given outright (one per training timestep) instead of beta_start..beta_end. */
  trained_betas: null as number[] | null,
  /** true: PLMS only; false: three Runge-Kutta warm-up steps first (12 model calls). */
  skip_prk_steps: false,
  /** The last step lands on alpha_cumprod = 1 (true) or on alphas_cumprod[0] (false). */
  set_alpha_to_one: false,
  /** "epsilon" or "v_prediction". */
  prediction_type: 'epsilon',
  /** "leading", "trailing" or "linspace". */
  timestep_spacing: 'leading',
  steps_offset: 0,
};
export type PNDMConfig = typeof PNDM_DEFAULTS;

// the type each null-by-default key takes when it is set
const NULLABLE: Record<string, string> = { trained_betas: 'number[]' };

const NAME = 'PNDMScheduler';

export class PNDMScheduler implements Scheduler {
  readonly name = NAME;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: PNDMConfig;
  timesteps: number[];
  private readonly alphasCumprod: Float64Array;
  private readonly finalAlphaCumprod: number;
  private numInferenceSteps: number | null = null;
  private prkTimesteps: number[] = [];
  // diffusers' counter / ets / cur_sample / cur_model_output: the multistep state
  private counter = 0;
  private ets: Float64Array[] = [];
  private curSample: Float64Array | null = null;
  private curModelOutput: Float64Array | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = readConfig(NAME, PNDM_DEFAULTS, config, NULLABLE);
    checkOneOf(NAME, 'prediction_type', this.config.prediction_type, ['epsilon', 'v_prediction']);
    checkOneOf(NAME, 'timestep_spacing', this.config.timestep_spacing, ['leading', 'trailing', 'linspace']);
    // diffusers' PNDM has no rescale_betas_zero_snr: its config lacks the key, so nothing is rescaled
    this.alphasCumprod = alphasCumprod(NAME, this.config);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const T = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: T, timestep_spacing: spacing, steps_offset: offset } = this.config;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1 || n > T) {
      throw new Error(`${NAME}: numInferenceSteps must be an integer in 1..${T} (got ${n})`);
    }
    // ascending, as diffusers' _timesteps
    let grid: number[];
    if (spacing === 'linspace') {
      grid = linspace(0, T - 1, n).map(roundHalfEven);
    } else if (spacing === 'leading') {
      const ratio = Math.floor(T / n);
      grid = Array.from({ length: n }, (_, i) => i * ratio + offset);
    } else {
      grid = arangeDown(T, T / n).map((t) => roundHalfEven(t) - 1).reverse();
    }
    if (this.config.skip_prk_steps) {
      // PLMS evaluates the second-to-last grid point twice: ..., 961, 921, 921, 881, ... (descending)
      this.prkTimesteps = [];
      this.timesteps = [...grid.slice(0, -1), ...grid.slice(-2, -1), ...grid.slice(-1)].reverse();
    } else {
      // PRK: each of the top three intervals is walked as t, t - h/2, t - h/2, t - h (h the spacing)
      const half = Math.floor(Math.floor(T / n) / 2);
      const top = grid.slice(-4).flatMap((t) => [t, t + half]);
      this.prkTimesteps = top.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...grid.slice(0, -3).reverse()];
    }
    this.numInferenceSteps = n;
    this.counter = 0;
    this.ets = [];
    this.curSample = null;
    this.curModelOutput = null;
  }

  // PNDM's multistep state follows its own call counter; diffusers' PNDM has no begin index to set.
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    if (this.numInferenceSteps === null) throw new Error(`${NAME}: call setTimesteps before step`);
    if (modelOutput.length !== sample.length) {
      throw new Error(`${NAME}: modelOutput has ${modelOutput.length} values, sample has ${sample.length}`);
    }
    if (!this.config.skip_prk_steps && this.counter < this.prkTimesteps.length) {
      return { prevSample: this.stepPrk(modelOutput, t, sample) };
    }
    return { prevSample: this.stepPlms(modelOutput, t, sample) };
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

  // Runge-Kutta: four calls per interval, weighted 1/6, 1/3, 1/3, 1/6, all stepping from the
  // sample at the start of the interval.
  private stepPrk(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const half = Math.floor(Math.floor(this.config.num_train_timesteps / this.numInferenceSteps!) / 2);
    const prevT = t - (this.counter % 2 ? 0 : half);
    const fromT = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const phase = this.counter % 4;
    const n = sample.length;
    let output: Float64Array;
    if (phase === 0) {
      this.curModelOutput = new Float64Array(n);
      for (let i = 0; i < n; i++) this.curModelOutput[i] = modelOutput[i] / 6;
      this.ets.push(Float64Array.from(modelOutput));
      this.curSample = Float64Array.from(sample);
      output = Float64Array.from(modelOutput);
    } else if (phase === 3) {
      output = new Float64Array(n);
      for (let i = 0; i < n; i++) output[i] = this.curModelOutput![i] + modelOutput[i] / 6;
      this.curModelOutput = null;
    } else {
      for (let i = 0; i < n; i++) this.curModelOutput![i] += modelOutput[i] / 3;
      output = Float64Array.from(modelOutput);
    }
    this.counter += 1;
    return this.prevSample(this.curSample ?? sample, fromT, prevT, output);
  }

  // Linear multistep (Adams-Bashforth up to 4th order) on the stored model outputs
  private stepPlms(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const stride = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps!);
    let fromT = t;
    let prevT = t - stride;
    const out = Float64Array.from(modelOutput);
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(out);
    } else {
      // the repeated timestep: redo the first interval with the average of both outputs
      prevT = t;
      fromT = t + stride;
    }
    const e = this.ets;
    const k = e.length;
    const n = sample.length;
    let x: ArrayLike<number> = sample;
    let combined: Float64Array;
    if (k === 1 && this.counter === 0) {
      combined = out;
      this.curSample = Float64Array.from(sample);
    } else if (k === 1 && this.counter === 1) {
      combined = new Float64Array(n);
      for (let i = 0; i < n; i++) combined[i] = (out[i] + e[0][i]) / 2;
      x = this.curSample!;
      this.curSample = null;
    } else {
      combined = new Float64Array(n);
      const [e1, e2, e3, e4] = [e[k - 1], e[k - 2], e[k - 3], e[k - 4]];
      for (let i = 0; i < n; i++) {
        if (k === 2) combined[i] = (3 * e1[i] - e2[i]) / 2;
        else if (k === 3) combined[i] = (23 * e1[i] - 16 * e2[i] + 5 * e3[i]) / 12;
        else combined[i] = (55 * e1[i] - 59 * e2[i] + 37 * e3[i] - 9 * e4[i]) / 24;
      }
    }
    this.counter += 1;
    return this.prevSample(x, fromT, prevT, combined);
  }

  // formula (9) of the PNDM paper: x_{t-δ} from x_t and the (combined) noise estimate
  private prevSample(sample: ArrayLike<number>, t: number, prevT: number, modelOutput: Float64Array): Float32Array {
    const alphaProdT = this.alphaAt(t);
    const alphaProdPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const betaProdT = 1 - alphaProdT;
    const betaProdPrev = 1 - alphaProdPrev;
    const v = this.config.prediction_type === 'v_prediction';
    const [epsFromOutput, epsFromSample] = v ? [Math.sqrt(alphaProdT), Math.sqrt(betaProdT)] : [1, 0];
    const sampleCoeff = Math.sqrt(alphaProdPrev / alphaProdT);
    const denominator = alphaProdT * Math.sqrt(betaProdPrev) + Math.sqrt(alphaProdT * betaProdT * alphaProdPrev);
    const outputCoeff = (alphaProdPrev - alphaProdT) / denominator;
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const eps = epsFromOutput * modelOutput[i] + epsFromSample * sample[i];
      prev[i] = sampleCoeff * sample[i] - outputCoeff * eps;
    }
    return prev;
  }

  private alphaAt(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new Error(`${NAME}: timestep must be an integer in 0..${this.alphasCumprod.length - 1} (got ${t})`);
    }
    return this.alphasCumprod[t];
  }
}
