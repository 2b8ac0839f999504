import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Upscaler } from '../src/upscaler';
import { interleavedToPlanar } from '../src/image';

/** A shapes image like the model's training data: a red disc and a yellow square on blue. */
async function shapes(size: number): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
    <rect width="100%" height="100%" fill="#1e3cc8"/>
    <circle cx="${size * 0.35}" cy="${size * 0.4}" r="${size * 0.2}" fill="#d21e1e"/>
    <rect x="${size * 0.6}" y="${size * 0.55}" width="${size * 0.25}" height="${size * 0.25}" fill="#e6d21e"/>
  </svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

async function raw(png: Buffer) {
  return (await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

function l1(a: Buffer, b: Buffer): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i] - b[i]);
  return d / a.length / 255;
}

describe('tiny-upscaler-x2', () => {
  let upscaler: Upscaler;
  beforeAll(async () => {
    upscaler = await Upscaler.load('models/tiny-upscaler-x2', { tileSize: 64, tileOverlap: 16 });
  });
  afterAll(() => upscaler.dispose());

  it('reads the scale and doubles the size', async () => {
    expect(upscaler.scale).toBe(2);
    const out = await upscaler.upscale({ image: await sharp(await shapes(96)).resize(48, 40, { fit: 'fill' }).png().toBuffer() });
    expect([out.width, out.height, out.contentType]).toEqual([96, 80, 'image/png']);
  });

  it('beats bilinear on the shapes data', async () => {
    const truth = await shapes(128);
    const small = await sharp(truth).resize(64, 64, { kernel: 'linear' }).png().toBuffer();
    const ours = await upscaler.upscale({ image: small });
    const bilinear = await sharp(small).resize(128, 128, { kernel: 'linear' }).png().toBuffer();
    const [t, o, b] = [await raw(truth), await raw(ours.data), await raw(bilinear)];
    expect(l1(o, t)).toBeLessThan(l1(b, t));
  });

  it('tiled and untiled agree within 1/255', async () => {
    const image = await shapes(150);
    const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const planar = interleavedToPlanar(data, info.width, info.height, info.channels);
    const tiles: number[] = [];
    const tiled = await upscaler.upscalePlanar(planar, { tiled: true, onTile: (done) => tiles.push(done) });
    const whole = await upscaler.upscalePlanar(planar, { tiled: false });
    expect(tiles.length).toBe(9); // 150 px in 64 px tiles: 3 x 3
    let maxDiff = 0;
    for (let i = 0; i < whole.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(tiled.data[i] - whole.data[i]));
    expect(maxDiff).toBeLessThanOrEqual(1 / 255);
  });

  it('honours a target width, and rejects both width and height or a size beyond the scale', async () => {
    const small = await sharp(await shapes(64)).png().toBuffer();
    const out = await upscaler.upscale({ image: small, width: 100 });
    expect([out.width, out.height]).toEqual([100, 100]);
    await expect(upscaler.upscale({ image: small, width: 100, height: 100 })).rejects.toMatchObject({ code: 'invalid_height_or_width' });
    await expect(upscaler.upscale({ image: small, width: 200 })).rejects.toMatchObject({ code: 'invalid_height_or_width', message: expect.stringContaining('from 64 to 128') });
  });

  it('stops between tiles when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(upscaler.upscale({ image: await shapes(200), signal: controller.signal })).rejects.toMatchObject({ code: 'canceled' });
  });
});
