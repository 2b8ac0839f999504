/**
 * Batching on the real tiny-sd: requests denoised together give each request the bytes it gets alone;
 * the batcher groups by batchKey only, respects maxImages, cancels a waiting call at once and a batched
 * one at its next step, and fails a bad request alone.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { GenerationBatcher } from '../src/batcher';
import { loadPipeline } from '../src/families';
import type { DiffusionPipeline } from '../src/pipeline';
import type { GenerateRequest } from '../src/types';

const MODEL = new URL('../../../models/tiny-sd', import.meta.url).pathname;
let pipeline: DiffusionPipeline;

const req = (text: string, seed: number, more: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompts: [{ text, weight: 1 }], steps: 8, seed, ...more });

beforeAll(async () => {
  pipeline = await loadPipeline(MODEL);
});

describe('generateBatch', () => {
  it("gives each request of a batch exactly the images it gets alone (prompts, seeds, samples and formats differ)", async () => {
    const reqs = [
      req('a red circle on a blue background', 11),
      req('a green square on a white background', 12, { samples: 2 }),
      req('a yellow triangle on a black background', 13, { outputFormat: 'webp', prompts: [{ text: 'a yellow triangle on a black background', weight: 1 }, { text: 'white', weight: -1 }] }),
    ];
    const batched = await pipeline.generateBatch(reqs);
    for (const [i, r] of reqs.entries()) {
      const alone = await pipeline.generate(r);
      const got = batched[i];
      expect(got.status).toBe('fulfilled');
      if (got.status !== 'fulfilled') continue;
      expect(got.value.images.map((x) => x.seed)).toEqual(alone.images.map((x) => x.seed));
      got.value.images.forEach((image, k) => expect(image.data.equals(alone.images[k].data), `request ${i} image ${k}`).toBe(true));
    }
  });

  it('refuses requests without one batchKey (another size, steps or guidance scale)', async () => {
    await expect(pipeline.generateBatch([req('x', 1), req('x', 2, { steps: 9 })])).rejects.toThrow(/batchKey/);
    expect(pipeline.batchKey(req('x', 1))!.key).not.toBe(pipeline.batchKey(req('x', 1, { cfgScale: 3 }))!.key);
    expect(pipeline.batchKey(req('x', 1))!.key).not.toBe(pipeline.batchKey(req('x', 1, { width: 192 }))!.key);
    expect(pipeline.batchKey(req('x', 1))!.key).not.toBe(pipeline.batchKey(req('x', 1, { sampler: 'K_DPMPP_2M' }))!.key);
    expect(pipeline.batchKey(req('x', 1, { samples: 3 }))).toEqual({ key: pipeline.batchKey(req('y', 5))!.key, images: 3, fit: Number.POSITIVE_INFINITY });
    expect(pipeline.batchKey(req('x', 1, { steps: 0 }))).toBeUndefined();
  });
});

describe('GenerationBatcher', () => {
  it('runs concurrent compatible calls as one batch, up to maxImages, and each gets its own images and progress', async () => {
    const batches: number[] = [];
    const batcher = new GenerationBatcher(pipeline, { maxImages: 3, windowMs: 50, onBatch: (n) => batches.push(n) });
    const steps: number[][] = [[], [], [], []];
    const reqs = [11, 12, 13, 14].map((seed, i) => req('a red circle on a blue background', seed, { onProgress: (p) => steps[i].push(p.step) }));
    const results = await Promise.all(reqs.map((r) => batcher.generate(r)));
    expect(batches).toEqual([3, 1]);
    expect(steps.every((s) => s.join() === '1,2,3,4,5,6,7,8')).toBe(true);
    for (const [i, r] of reqs.entries()) {
      const alone = await pipeline.generate({ ...r, onProgress: undefined });
      expect(results[i].images[0].data.equals(alone.images[0].data)).toBe(true);
    }
  });

  it('keeps incompatible calls apart, in arrival order', async () => {
    const batches: number[] = [];
    const batcher = new GenerationBatcher(pipeline, { maxImages: 4, windowMs: 50, onBatch: (n) => batches.push(n) });
    const done: number[] = [];
    await Promise.all([req('x', 1), req('x', 2, { steps: 6 }), req('x', 3)].map((r, i) => batcher.generate(r).then(() => done.push(i))));
    expect(batches).toEqual([2, 1]);
    expect(done).toEqual([0, 2, 1]);
  });

  it('a call canceled while it waits leaves at once; one canceled in a batch fails at its next step, the others finish', async () => {
    const batcher = new GenerationBatcher(pipeline, { maxImages: 4, windowMs: 30 });
    const waiting = new AbortController();
    const inBatch = new AbortController();
    const running = batcher.generate(req('x', 1, { steps: 20 }));
    const canceledMidway = batcher.generate(req('x', 2, { steps: 20, signal: inBatch.signal, onProgress: (p) => p.step === 3 && inBatch.abort() }));
    await new Promise((r) => setTimeout(r, 60)); // the batch of two has started
    const queued = batcher.generate(req('x', 3, { steps: 20, signal: waiting.signal }));
    waiting.abort();
    await expect(queued).rejects.toMatchObject({ code: 'canceled', message: /before it started/ });
    await expect(canceledMidway).rejects.toMatchObject({ code: 'canceled', message: /before step 4 of 20/ });
    expect((await running).images).toHaveLength(1);
  });

  it('a request that fails its checks fails alone', async () => {
    const batcher = new GenerationBatcher(pipeline, { maxImages: 4, windowMs: 30 });
    const [good, bad] = await Promise.allSettled([batcher.generate(req('x', 1)), batcher.generate(req('x', 2, { steps: 0 }))]);
    expect(good.status).toBe('fulfilled');
    expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'invalid_steps' } });
  });
});
