/**
 * How much memory a generation takes, and a bound on it. A run's peak above the resting process is
 * measured when an engine loads (the real pipeline at a few sizes, one image with guidance each) and
 * fitted per image as `fixed + perCell * cells + perCellSquared * cells^2` over the latent grid's cells:
 * self-attention over the grid is quadratic in its cells, convolutions linear, and a batch of k images
 * takes k times one. The worker runs a job's images in micro-batches that fit its bound (MemoryGate),
 * and tells the API the model so that a size whose one image cannot fit is refused at the door.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** Per-image peak bytes as a function of the latent grid's cells (see the module comment). */
export interface MemoryModel {
  fixed: number;
  perCell: number;
  perCellSquared: number;
  /** What the fit was made from: latent cells and the measured peak bytes of one image. */
  points: { cells: number; bytes: number }[];
}

/** Measured peaks are raised by this much before use: the fit is made below the sizes it is asked about. */
export const MEMORY_SAFETY = 1.2;

/**
 * Peak bytes one image of `cells` latent cells takes, with the safety factor. Within the measured sizes
 * the fit answers; beyond the largest, the largest's peak grown with the square of the cells, the
 * steepest memory grows (attention), since a fit of small sizes understates the quadratic term (tiny-sd:
 * fitted to 256x256 and below, 512x512 came out at 0.8 of what it took).
 */
export function imageBytes(model: MemoryModel, cells: number): number {
  const fit = (c: number) => model.fixed + model.perCell * c + model.perCellSquared * c * c;
  const last = model.points.reduce((a, p) => (p.cells > a.cells ? p : a), { cells: 0, bytes: 0 });
  const beyond = last.cells > 0 && cells > last.cells ? Math.max(fit(last.cells), last.bytes) * (cells / last.cells) ** 2 : 0;
  return Math.ceil(MEMORY_SAFETY * Math.max(fit(cells), beyond));
}

/** The most latent cells one image may have to fit in `bytes` (0 when not even the smallest does). */
export function maxCells(model: MemoryModel, bytes: number): number {
  if (imageBytes(model, 1) > bytes) return 0;
  // imageBytes grows with the cells: the largest that fits, by bisection
  let lo = 1;
  let hi = 2;
  while (imageBytes(model, hi) <= bytes && hi < 2 ** 40) hi *= 2;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (imageBytes(model, mid) <= bytes) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Least squares for bytes = fixed + perCell * c + perCellSquared * c^2, every coefficient >= 0 (memory
 * does not shrink as images grow); with fewer than three points the constant is left out.
 */
export function fitMemoryModel(points: { cells: number; bytes: number }[]): MemoryModel {
  if (!points.length) throw new Error('fitMemoryModel needs at least one measurement');
  const terms: ((c: number) => number)[] = points.length >= 3 ? [() => 1, (c) => c, (c) => c * c] : [(c) => c, (c) => c * c];
  // Every subset of the terms, solved by its normal equations; the best fit with no negative coefficient wins.
  let best: { coef: number[]; used: number[]; err: number } | undefined;
  for (let mask = 1; mask < 1 << terms.length; mask++) {
    const used = terms.map((_, i) => i).filter((i) => mask & (1 << i));
    const coef = solveLeastSquares(points.map((p) => used.map((i) => terms[i](p.cells))), points.map((p) => p.bytes));
    if (!coef || coef.some((v) => v < 0)) continue;
    const err = points.reduce((s, p) => s + (p.bytes - used.reduce((acc, i, j) => acc + coef[j] * terms[i](p.cells), 0)) ** 2, 0);
    if (!best || err < best.err - 1e-6 * Math.max(1, best.err)) best = { coef, used, err };
  }
  const value = (term: number) => {
    const at = best ? best.used.indexOf(term) : -1;
    return at < 0 ? 0 : best!.coef[at];
  };
  const three = terms.length === 3;
  // no fit (a single point, say): all of it quadratic, the cautious reading
  if (!best) return { fixed: 0, perCell: 0, perCellSquared: Math.max(...points.map((p) => p.bytes / (p.cells * p.cells))), points };
  return { fixed: three ? value(0) : 0, perCell: value(three ? 1 : 0), perCellSquared: value(three ? 2 : 1), points };
}

function solveLeastSquares(rows: number[][], ys: number[]): number[] | undefined {
  const n = rows[0].length;
  // normal equations, scaled per column for conditioning (cells^2 runs to 1e9)
  const scale = Array.from({ length: n }, (_, j) => Math.max(...rows.map((r) => Math.abs(r[j]))) || 1);
  const a = Array.from({ length: n }, (_, i) => Array.from({ length: n + 1 }, (_, j) => (j < n ? rows.reduce((s, r) => s + (r[i] / scale[i]) * (r[j] / scale[j]), 0) : rows.reduce((s, r, k) => s + (r[i] / scale[i]) * ys[k], 0))));
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    if (Math.abs(a[pivot][col]) < 1e-12) return undefined;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = a[r][col] / a[col][col];
      for (let k = col; k <= n; k++) a[r][k] -= f * a[col][k];
    }
  }
  return a.map((row, i) => row[n] / row[i] / scale[i]);
}

/** Resident memory of this process, and its peak since the last reset, from /proc (Linux). */
export class ResidentMemory {
  /** Whether the peak can be reset (Linux's clear_refs); elsewhere the peak is sampled. */
  readonly exact: boolean;

  constructor() {
    this.exact = ResidentMemory.canReset();
  }

  private static canReset(): boolean {
    try {
      writeFileSync('/proc/self/clear_refs', '5');
      return /VmHWM:/.test(readFileSync('/proc/self/status', 'utf8'));
    } catch {
      return false;
    }
  }

  /** Bytes resident now. */
  now(): number {
    if (!this.exact) return process.memoryUsage.rss();
    return statusKb('VmRSS') * 1024;
  }

  /** The peak resident bytes while fn runs (VmHWM after a reset; else sampled every 2 ms). */
  async peakDuring<T>(fn: () => Promise<T>): Promise<{ value: T; peak: number }> {
    if (this.exact) {
      writeFileSync('/proc/self/clear_refs', '5');
      const value = await fn();
      return { value, peak: statusKb('VmHWM') * 1024 };
    }
    let peak = process.memoryUsage.rss();
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 2);
    try {
      const value = await fn();
      return { value, peak: Math.max(peak, process.memoryUsage.rss()) };
    } finally {
      clearInterval(timer);
    }
  }
}

function statusKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * What fits a bound, in words: the size asked, what one image of it needs, the bound, and the largest
 * square (a multiple of 64) that fits. One wording for the worker's refusal and the API's.
 */
export function memoryRefusal(model: MemoryModel, budget: number, cells: number, pixelsPerCell: number): { needMb: number; budgetMb: number; largestSquare: string } {
  const mb = (bytes: number) => Math.ceil(bytes / 2 ** 20);
  const side = Math.floor(Math.sqrt(maxCells(model, budget) * pixelsPerCell) / 64) * 64;
  return { needMb: mb(imageBytes(model, cells)), budgetMb: mb(budget), largestSquare: side >= 64 ? `the largest square that fits is ${side}x${side}` : 'no size fits' };
}

/**
 * A process-wide bound on the memory runs may take at once: each micro-batch holds its predicted bytes
 * while it runs; one that does not fit beside the others waits (first come, first served).
 */
export class MemoryGate {
  private used = 0;
  private readonly waiting: { bytes: number; grant(granted: number): void }[] = [];

  private cap: number;

  /** @param capacity bytes runs may take together (the worker's bound less what its engines hold at rest) */
  constructor(capacity: number) {
    this.cap = capacity;
  }

  get capacity(): number {
    return this.cap;
  }

  /** A new capacity (an engine loaded or removed while the worker runs); what waits is granted if it now fits. */
  resize(capacity: number): void {
    this.cap = Math.max(0, capacity);
    this.grantWaiting();
  }

  /** Waits until `bytes` fit (at most the capacity) and holds them; call the returned function to give them back. */
  async acquire(bytes: number): Promise<() => void> {
    const want = Math.min(bytes, this.cap);
    if (!this.waiting.length && this.used + want <= this.cap) {
      this.used += want;
      return this.releaser(want);
    }
    const granted = await new Promise<number>((grant) => this.waiting.push({ bytes: want, grant }));
    return this.releaser(granted);
  }

  private grantWaiting(): void {
    while (this.waiting.length) {
      // a capacity that shrank below what waits: it gets the whole capacity, as a new request would
      const take = Math.min(this.waiting[0].bytes, this.cap);
      if (this.used + take > this.cap) break;
      this.used += take;
      this.waiting.shift()!.grant(take);
    }
  }

  get inUse(): number {
    return this.used;
  }

  private releaser(bytes: number): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used -= bytes;
      this.grantWaiting();
    };
  }
}

/** What a pipeline is told of memory: its engine's model and the worker's gate. */
export interface MemoryPlan {
  model: MemoryModel;
  gate: MemoryGate;
}
