/** Checks against a fixture's reference.json: its rebuildable inputs and its output sums. */
import { expect } from 'vitest';

/** reference.json's inputs: x[i] = sin(0.01 i) over the flat row-major array. */
export const det = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(0.01 * i));
export const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
export const absSum = (a: Float32Array) => a.reduce((s, v) => s + Math.abs(v), 0);

export interface Ref {
  shape: number[];
  sum: number;
  abs_sum: number;
  first: number[];
}

/** Shape exact; sum and absolute sum within 1e-3 of the absolute sum; the first values to 3 places. */
export function expectMatches(data: Float32Array, dims: number[], ref: Ref) {
  expect(dims).toEqual(ref.shape);
  expect(Math.abs(sum(data) - ref.sum) / ref.abs_sum).toBeLessThan(1e-3);
  expect(Math.abs(absSum(data) - ref.abs_sum) / ref.abs_sum).toBeLessThan(1e-3);
  ref.first.forEach((v, i) => expect(data[i]).toBeCloseTo(v, 3));
}
