import { randomInt } from 'node:crypto';

/**
 * The seeded normal generator, documented so that any implementation can reproduce sdq's noise:
 *
 * - state: xoshiro128** (four uint32 words), seeded by running splitmix32 four times from the
 *   32-bit seed;
 * - uniform: u = ((a >>> 5) * 2^26 + (b >>> 6)) / 2^53, the 53-bit construction, from two consecutive
 *   outputs a, b; 1 - u is used for the log so it is never 0;
 * - normal: Box-Muller, both values of each pair used in order (r = sqrt(-2 ln(1-u1)), z0 = r cos(2 pi u2),
 *   z1 = r sin(2 pi u2)).
 *
 * Sample i of a request uses seed + i (mod 2^32), so one image of a batch can be reproduced alone.
 */
export class NormalRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(readonly seed: number) {
    let x = seed >>> 0;
    const splitmix = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix();
    this.s1 = splitmix();
    this.s2 = splitmix();
    this.s3 = splitmix();
  }

  /** xoshiro128** */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  normal(): number {
    if (this.spare !== undefined) {
      const z = this.spare;
      this.spare = undefined;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(1 - this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  randn(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Noise for a batch whose rows belong to different seeds: randn(n) takes n / rows values from each
 * row's own generator, so a sample's noise does not depend on the batch it ran in.
 */
export class BatchRng {
  constructor(private readonly rows: NormalRng[]) {}

  randn(n: number): Float32Array {
    const per = n / this.rows.length;
    if (!Number.isInteger(per)) throw new Error(`noise of ${n} values cannot be split over ${this.rows.length} samples`);
    const out = new Float32Array(n);
    this.rows.forEach((rng, r) => out.set(rng.randn(per), r * per));
    return out;
  }
}

export const MAX_SEED = 4294967295;

/** Seed 0 (or none) means random, as in Stability's API; the result reports the seed actually used. */
export function resolveSeed(seed: number | undefined): number {
  if (seed === undefined || seed === 0) return randomInt(1, MAX_SEED);
  return seed >>> 0;
}

export function sampleSeed(seed: number, index: number): number {
  return (seed + index) % (MAX_SEED + 1);
}
