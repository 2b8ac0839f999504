// The noise schedule the schedulers share (betas, alphas_cumprod, sigmas) and the numeric helpers
// that reproduce numpy's and torch's arithmetic, so timesteps and sigmas match diffusers bit for bit.
// The algorithms themselves stay one per scheduler file.

const f32 = Math.fround;

/** The scheduler_config.json keys that define the betas. */
export interface BetaScheduleConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: number[] | null;
  /** Absent from schedulers that diffusers gives no such option (PNDM): then never rescaled. */
  rescale_betas_zero_snr?: boolean;
}

// alphas_cumprod exactly as diffusers holds it: float32 betas (torch.linspace in float32), a cumulative
// product accumulated in double and stored as float32, as torch's CPU cumprod does. `name` is the
// scheduler class, which the error messages name.
export function alphasCumprod(name: string, c: BetaScheduleConfig): Float64Array {
  const T = c.num_train_timesteps;
  let betas: Float64Array;
  if (c.trained_betas) {
    if (c.trained_betas.length !== T) throw new Error(`${name}: trained_betas must have num_train_timesteps = ${T} values (got ${c.trained_betas.length})`);
    betas = Float64Array.from(c.trained_betas, f32);
  } else if (c.beta_schedule === 'linear') {
    betas = linspaceF32(c.beta_start, c.beta_end, T);
  } else if (c.beta_schedule === 'scaled_linear') {
    betas = linspaceF32(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end), T).map((b) => f32(b * b));
  } else if (c.beta_schedule === 'squaredcos_cap_v2') {
    const alphaBar = (x: number) => Math.cos(((x + 0.008) / 1.008) * Math.PI / 2) ** 2;
    betas = Float64Array.from({ length: T }, (_, i) => f32(Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999)));
  } else {
    throw new Error(`${name}: beta_schedule must be one of linear, scaled_linear, squaredcos_cap_v2 (got "${c.beta_schedule}")`);
  }
  if (c.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return cumprodF32(betas);
}

export function cumprodF32(betas: Float64Array): Float64Array {
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
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
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

// ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32, ascending with t
export function sigmaTable(alphasCumprod: Float64Array): number[] {
  return Array.from(alphasCumprod, (a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

// Karras et al. (2022), eq. 5 with rho = 7
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((ramp) => (maxInvRho + ramp * (minInvRho - maxInvRho)) ** rho);
}

// the fractional timestep whose log-sigma (linearly interpolated in the table) equals log(sigma)
export function sigmaToT(sigma: number, logTable: number[]): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let j = 0; j < logTable.length; j++) if (logSigma >= logTable[j]) low = j;
  low = Math.min(low, logTable.length - 2);
  const w = Math.min(1, Math.max(0, (logTable[low] - logSigma) / (logTable[low] - logTable[low + 1])));
  return (1 - w) * low + w * (low + 1);
}

// numpy.interp at t over the table indexed 0..len-1
export function interp(t: number, table: number[]): number {
  if (t <= 0) return table[0];
  if (t >= table.length - 1) return table[table.length - 1];
  const j = Math.floor(t);
  return (table[j + 1] - table[j]) * (t - j) + table[j];
}

// torch.linspace(start, end, steps, dtype=float32) on CPU: a float32 step, filled from both ends
export function linspaceF32(start: number, end: number, steps: number): Float64Array {
  const [s, e] = [f32(start), f32(end)];
  if (steps === 1) return Float64Array.of(s);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Float64Array.from({ length: steps }, (_, i) => (i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)))));
}

// numpy.linspace(start, stop, num): i * step + start, with the last value pinned to stop
export function linspace(start: number, stop: number, num: number): number[] {
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === 0 ? start : i === num - 1 ? stop : i * step + start));
}

/**
 * diffusers' "linspace", "leading" and "trailing" grids of inference timesteps, descending. linspace is
 * left unrounded, as the sigma schedulers keep it; integer schedulers (DDIM, DDPM) round it half-even.
 */
export function spacedTimesteps(spacing: string, numTrainTimesteps: number, n: number, stepsOffset: number): number[] {
  const T = numTrainTimesteps;
  if (spacing === 'linspace') return linspace(0, T - 1, n).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
  }
  return arangeDown(T, T / n).map((t) => roundHalfEven(t) - 1);
}

// numpy.arange(start, 0, -step) for a float step, including numpy's length rule and fill arithmetic
export function arangeDown(start: number, step: number): number[] {
  const length = Math.ceil((0 - start) / -step);
  const delta = start - step - start;
  return Array.from({ length }, (_, i) => start + i * delta);
}

// numpy rounds halves to even (166.5 -> 166); Math.round would not
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * diffusers' index_for_timestep: the second match when t occurs twice (so img2img starting mid-schedule
 * skips no sigma), else the first; -1 when t is not in the schedule (each scheduler decides what then).
 */
export function timestepIndex(timesteps: readonly number[], t: number): number {
  const first = timesteps.indexOf(t);
  if (first < 0) return -1;
  const second = timesteps.indexOf(t, first + 1);
  return second < 0 ? first : second;
}
