/**
 * Hires fix on tiny-sd: 128 -> 256 by a latent mode and by Lanczos, the prompt's colours kept, one
 * progress over both passes, the parameters' Hires lines; the latent interpolation as torch's.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../src/families';
import { hiresFix, upscaleLatents } from '../src/hires';
import type { DiffusionPipeline } from '../src/pipeline';
import { readPngText } from '../src/image';
import { isBlue, isRed, meanColour, pixels } from './images';

let pipeline: DiffusionPipeline;
beforeAll(async () => {
  pipeline = await loadPipeline('../shared/models/tiny-sd');
});

describe('upscaleLatents', () => {
  // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), scale_factor=2, mode=...)
  const x = Float32Array.from([1, 2, 3, 4]);
  it('bilinear, align_corners false', () => {
    expect([...upscaleLatents(x, 1, 2, 2, 4, 4, 'Latent')]).toEqual([1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]);
  });
  it('nearest and nearest-exact', () => {
    expect([...upscaleLatents(x, 1, 2, 2, 4, 4, 'Latent (nearest)')]).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    expect([...upscaleLatents(Float32Array.from([1, 2, 3]), 1, 1, 3, 1, 5, 'Latent (nearest)')]).toEqual([1, 1, 2, 2, 3]);
    expect([...upscaleLatents(Float32Array.from([1, 2, 3]), 1, 1, 3, 1, 5, 'Latent (nearest-exact)')]).toEqual([1, 1, 2, 3, 3]);
  });
  it('bicubic (a = -0.75) keeps a constant constant', () => {
    expect([...upscaleLatents(new Float32Array(9).fill(2), 1, 3, 3, 6, 6, 'Latent (bicubic)')].every((v) => Math.abs(v - 2) < 1e-6)).toBe(true);
  });
});

describe('hiresFix', () => {
  const base = { prompts: [{ text: 'a large red circle in the center on a blue background' }], seed: 3, steps: 12, cfgScale: 7, width: 128, height: 128 };

  for (const upscaler of ['Latent', 'Lanczos']) {
    it(`${upscaler}: 128 -> 256, the colours kept, progress 0 -> 1 once over both passes, the Hires lines`, async () => {
      const seen: { step: number; total: number }[] = [];
      const result = await hiresFix(pipeline, { ...base, samples: 2, hires: { width: 256, height: 256, upscaler, steps: 8, denoisingStrength: 0.6, label: { 'Hires upscale': 2 } }, onProgress: (p) => seen.push(p) });
      expect(result.images).toHaveLength(2);
      for (const image of result.images) {
        expect([image.width, image.height]).toEqual([256, 256]);
        const img = await pixels(image.data);
        expect([img.width, img.height]).toEqual([256, 256]);
        expect(isRed(meanColour(img, 118, 118, 20))).toBe(true);
        expect(isBlue(meanColour(img, 4, 4, 20))).toBe(true);
      }
      expect(result.images.map((i) => i.seed)).toEqual([3, 4]);
      const totals = new Set(seen.map((p) => p.total));
      expect([...totals]).toEqual([12 + 2 * 8]);
      for (let i = 1; i < seen.length; i++) expect(seen[i].step).toBeGreaterThanOrEqual(seen[i - 1].step);
      expect(seen.at(-1)!.step).toBe(28);
      const parameters = readPngText(result.images[0].data).parameters;
      expect(parameters).toMatch(/Size: 256x256/);
      expect(parameters).toMatch(/Denoising strength: 0\.6/);
      expect(parameters).toMatch(new RegExp(`Hires upscale: 2, Hires steps: 8, Hires upscaler: ${upscaler}, First pass size: 128x128`));
    });
  }

  it('a canceled second pass stops', async () => {
    const controller = new AbortController();
    const run = hiresFix(pipeline, { ...base, signal: controller.signal, hires: { width: 256, height: 256, upscaler: 'Latent', denoisingStrength: 0.6 }, onProgress: (p) => p.step > 14 && controller.abort() });
    await expect(run).rejects.toMatchObject({ code: 'canceled' });
  });
});
