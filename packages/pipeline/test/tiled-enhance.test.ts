// The tiling and the blend of tiledEnhance, with a generator whose answer is known: the real pipeline
// runs it in test/e2e/v2beta.test.ts.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { tiledEnhance, tileOrigins, type TileGenerator } from '../src/tiled-enhance';
import type { GenerateRequest } from '../src/types';

describe('tileOrigins', () => {
  it('covers the side with tiles a stride of tile - overlap apart, the last flush with the end', () => {
    expect(tileOrigins(128, 128, 32)).toEqual([0]);
    expect(tileOrigins(256, 128, 32)).toEqual([0, 96, 128]);
    expect(tileOrigins(200, 128, 32)).toEqual([0, 72]);
    expect(tileOrigins(1024, 512, 128)).toEqual([0, 384, 512]);
  });
});

describe('tiledEnhance', () => {
  const input = () => sharp({ create: { width: 100, height: 64, channels: 3, background: '#3060c0' } }).png().toBuffer();
  const base = { width: 200, height: 128, tileWidth: 128, tileHeight: 128, prompts: [{ text: 'x' }], imageStrength: 0.7, steps: 10, cfgScale: 7, seed: 5, outputFormat: 'png' as const };

  it('a generator that hands each tile back unchanged gives the resized image, at the output size, one call per tile', async () => {
    const calls: GenerateRequest[] = [];
    const identity: TileGenerator = {
      async generate(req) {
        calls.push(req);
        return { images: [{ data: req.initImage!, seed: req.seed!, contentType: 'image/png', width: req.width!, height: req.height!, finishReason: 'SUCCESS' }], truncatedTokens: 0, timings: { totalMs: 0, onnxMs: 0 } } as never;
      },
    };
    const out = await tiledEnhance(identity, { ...base, image: await input() });
    expect([out.width, out.height, out.seed]).toEqual([200, 128, 5]);
    expect(calls.map((c) => [c.width, c.height, c.seed, c.imageStrength])).toEqual([[128, 128, 5, 0.7], [128, 128, 6, 0.7]]);
    const { data } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
    for (let p = 0; p < 200 * 128; p++) expect(Math.abs(data[p * 3] - 0x30) + Math.abs(data[p * 3 + 2] - 0xc0)).toBeLessThanOrEqual(2);
  });

  it('where two tiles disagree the blend ramps from one to the other across the overlap, with no step', async () => {
    // tile 0 answers black, tile 1 white: overlap x = 72..128
    let call = 0;
    const twoTone: TileGenerator = {
      async generate(req) {
        const v = call++ === 0 ? 0 : 255;
        const data = await sharp({ create: { width: req.width!, height: req.height!, channels: 3, background: { r: v, g: v, b: v } } }).png().toBuffer();
        return { images: [{ data, seed: req.seed!, contentType: 'image/png', width: req.width!, height: req.height!, finishReason: 'SUCCESS' }], truncatedTokens: 0 } as never;
      },
    };
    const out = await tiledEnhance(twoTone, { ...base, image: await input() });
    const { data } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
    const row = Array.from({ length: 200 }, (_, x) => data[(64 * 200 + x) * 3]);
    expect(row[0]).toBe(0);
    expect(row[199]).toBe(255);
    // never decreasing, and no jump between neighbours larger than 255 / (32-pixel ramp) with rounding
    for (let x = 1; x < 200; x++) {
      expect(row[x]).toBeGreaterThanOrEqual(row[x - 1]);
      expect(row[x] - row[x - 1], `x = ${x}`).toBeLessThanOrEqual(9);
    }
  });

  it('refuses an output smaller than one tile', async () => {
    const never: TileGenerator = { generate: () => Promise.reject(new Error('not called')) };
    await expect(tiledEnhance(never, { ...base, width: 100, image: await input() })).rejects.toThrow(/smaller than one 128x128 tile/);
  });
});
