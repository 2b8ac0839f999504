/**
 * The safety checker on tiny-sd with the stand-in checker of ../shared/models/tiny-safety-checker (it
 * flags images more than 20% saturated red): a red circle on red is flagged, a blue square on white is
 * not; each mode does what it says (blur is really a blur: little high-frequency energy left; black is
 * black; refuse fails the request alone; flag keeps the image; off runs no checker), CLIP's
 * preprocessing follows the feature extractor's config, and a folder that is not a checker is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../src/families';
import type { DiffusionPipeline } from '../src/pipeline';
import { checkerFolderOf, isCheckerFolder, SafetyChecker } from '../src/safety';
import type { GenerateRequest } from '../src/types';
import { pixels } from './images';
import sharp from 'sharp';
import { tiledEnhance } from '../src/tiled-enhance';

const CHECKER = '../shared/models/tiny-safety-checker';
const FLAGGED = 'a large red circle in the center on a red background';
const CLEAN = 'a large blue square in the center on a white background';

let pipeline: DiffusionPipeline;
beforeAll(async () => {
  pipeline = await loadPipeline('../shared/models/tiny-sd');
  pipeline.safety = await SafetyChecker.load(CHECKER);
});
afterAll(async () => {
  await pipeline.safety?.dispose();
});

const request = (text: string, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompts: [{ text }], seed: 3, steps: 20, cfgScale: 7, ...extra });

/** Mean squared difference of horizontally neighbouring pixels: the image's high-frequency energy. */
async function highFrequency(png: Buffer): Promise<number> {
  const img = await pixels(png);
  let sum = 0;
  let n = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = 1; x < img.width; x++) {
      for (let c = 0; c < 3; c++) {
        const d = img.data[(y * img.width + x) * 3 + c] - img.data[(y * img.width + x - 1) * 3 + c];
        sum += d * d;
        n++;
      }
    }
  }
  return sum / n;
}

describe('the safety checker', () => {
  it('flags a red circle on red and not a blue square on white', async () => {
    const [flagged, clean] = await Promise.all([pipeline.generate(request(FLAGGED, { safety: 'flag' })), pipeline.generate(request(CLEAN, { safety: 'flag' }))]);
    expect(flagged.images[0].finishReason).toBe('CONTENT_FILTERED');
    expect(clean.images[0].finishReason).toBe('SUCCESS');
  });

  it('blur: the picture gone but its colours (high-frequency energy far below the original); black: black; flag and off: the image as made', async () => {
    const made = await pipeline.generate(request(FLAGGED, { safety: 'off' }));
    const flag = await pipeline.generate(request(FLAGGED, { safety: 'flag' }));
    const blur = await pipeline.generate(request(FLAGGED, { safety: 'blur' }));
    const black = await pipeline.generate(request(FLAGGED, { safety: 'black' }));
    expect(made.images[0].finishReason).toBe('SUCCESS');
    const original = (await pixels(made.images[0].data)).data;
    expect((await pixels(flag.images[0].data)).data.equals(original)).toBe(true);
    expect(blur.images[0].finishReason).toBe('CONTENT_FILTERED');
    expect(await highFrequency(blur.images[0].data)).toBeLessThan((await highFrequency(made.images[0].data)) / 10);
    // still reddish on average: a blur, not a blank
    const blurred = (await pixels(blur.images[0].data)).data;
    let red = 0;
    for (let i = 0; i < blurred.length; i += 3) red += blurred[i];
    expect(red / (blurred.length / 3)).toBeGreaterThan(120);
    expect((await pixels(black.images[0].data)).data.every((v) => v === 0)).toBe(true);
    expect(black.images[0].finishReason).toBe('CONTENT_FILTERED');
    // the default with a checker loaded is blur
    expect((await pipeline.generate(request(FLAGGED))).images[0].finishReason).toBe('CONTENT_FILTERED');
  });

  it('refuse fails that request alone; the others of its batch get their images', async () => {
    const settled = await pipeline.generateBatch([request(FLAGGED, { safety: 'refuse' }), request(CLEAN, { safety: 'refuse', seed: 4 }), request(FLAGGED, { safety: 'flag', seed: 3 })]);
    expect(settled[0]).toMatchObject({ status: 'rejected', reason: { code: 'content_filtered' } });
    expect(settled[1]).toMatchObject({ status: 'fulfilled', value: { images: [{ finishReason: 'SUCCESS' }] } });
    expect(settled[2]).toMatchObject({ status: 'fulfilled', value: { images: [{ finishReason: 'CONTENT_FILTERED' }] } });
  });

  it('inpainting is checked as returned (composited), and an enhance as the whole image, not tile by tile', async () => {
    const red = await pipeline.generate(request(FLAGGED, { safety: 'off' }));
    // repaint the middle of the red image: the result is still mostly red, so it is flagged
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000' } }).composite([{ input: { create: { width: 32, height: 32, channels: 3, background: '#fff' } }, left: 48, top: 48 }]).png().toBuffer();
    const inpainted = await pipeline.generate(request(CLEAN, { safety: 'flag', initImage: red.images[0].data, maskImage: mask, maskSource: 'MASK_IMAGE_WHITE' }));
    expect(inpainted.images[0].finishReason).toBe('CONTENT_FILTERED');
    const enhanced = await tiledEnhance(pipeline, { image: red.images[0].data, width: 256, height: 256, tileWidth: 128, tileHeight: 128, prompts: [{ text: FLAGGED }], imageStrength: 0.7, steps: 10, cfgScale: 7, seed: 2, outputFormat: 'png', safety: 'black' });
    expect(enhanced.finishReason).toBe('CONTENT_FILTERED');
    expect((await pixels(enhanced.data)).data.every((v) => v === 0)).toBe(true);
  });

  it("CLIP's preprocessing: the shortest edge to 224, centre crop, normalised with the config's mean and std", async () => {
    const white = { data: new Float32Array(3 * 128 * 256).fill(1), width: 256, height: 128 };
    const input = await pipeline.safety!.clipInput(white);
    expect([input.width, input.height, input.data.length]).toEqual([224, 224, 3 * 224 * 224]);
    // white is (1 - mean) / std in each channel
    expect(input.data[0]).toBeCloseTo((1 - 0.48145466) / 0.26862954, 4);
    expect(input.data[2 * 224 * 224 + 500]).toBeCloseTo((1 - 0.40821073) / 0.27577711, 4);
  });

  it('a checker folder is found in the engine, named by its manifest, or shared; a folder that is not one is refused', async () => {
    expect(isCheckerFolder(CHECKER)).toBe(true);
    expect(isCheckerFolder('../shared/models/tiny-sd')).toBe(false);
    expect(checkerFolderOf('../shared/models/tiny-sd', undefined, '/shared/checker')).toBe('/shared/checker');
    expect(checkerFolderOf('/models/a', '../checkers/sd', '/shared/checker')).toBe('/models/checkers/sd');
    expect(checkerFolderOf('../shared/models/tiny-sd', undefined, undefined)).toBeUndefined();
    await expect(SafetyChecker.load('../shared/models/tiny-sd')).rejects.toMatchObject({ code: 'invalid_model' });
  });
});
