/**
 * Stable Diffusion 3 on tiny-sd3: T5 and CLIP ids, the composed conditioning and the transformer against
 * models/tiny-sd3/reference.json; then what a person sees (colours; tiny-sd3's shapes are rough blobs),
 * without T5, image-to-image, and the family's sampler and defaults.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline, readPngText, StableDiffusion3Pipeline, type GenerateRequest } from '../src';
import { centreAndCorners, isBlue, meanColour, pixels, type Rgb } from './images';
import { absSum, det, expectMatches, type Ref } from './reference';

const DIR = 'models/tiny-sd3';
const ref = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8'));
const key = (prefix: string) => Object.keys(ref).find((k) => k.startsWith(prefix))!;

/** The share of an image's pixels that satisfy a colour test. */
async function share(png: Buffer, test: (c: Rgb) => boolean): Promise<number> {
  const img = await pixels(png);
  let n = 0;
  for (let i = 0; i < img.width * img.height; i++) if (test([img.data[i * 3] / 255, img.data[i * 3 + 1] / 255, img.data[i * 3 + 2] / 255])) n++;
  return n / (img.width * img.height);
}
const red = ([r, g, b]: Rgb) => r > 0.5 && g < 0.4 && b < 0.4;
const yellow = ([r, g, b]: Rgb) => r > 0.5 && g > 0.45 && b < 0.35;
const green = ([r, g, b]: Rgb) => g > 0.4 && g > r + 0.15 && g > b + 0.15;
const white = ([r, g, b]: Rgb) => r > 0.75 && g > 0.75 && b > 0.75;
const purple = ([r, g, b]: Rgb) => r > 0.3 && b > 0.3 && g < r - 0.1 && g < b - 0.1;
const isWhite = (c: Rgb) => white(c);
// tiny-sd3's backgrounds are rougher than tiny-sd's: dark rather than black.
const isDark = ([r, g, b]: Rgb) => 0.299 * r + 0.587 * g + 0.114 * b < 0.25;
const isYellowish = (c: Rgb) => yellow(c);

let sd3: StableDiffusion3Pipeline;
beforeAll(async () => {
  const loaded = await loadPipeline(DIR);
  expect(loaded).toBeInstanceOf(StableDiffusion3Pipeline);
  sd3 = loaded as StableDiffusion3Pipeline;
});
afterAll(async () => {
  await sd3?.dispose();
});

describe('tiny-sd3 against reference.json', () => {
  it('tokenizes with both CLIP tokenizers and T5 (tokenizer.json)', () => {
    const [l, g, t5] = sd3.model.encoders;
    ref.prompts.forEach((p: string, i: number) => {
      expect(l.tokenizer.encode(p).ids).toEqual(ref.clip_input_ids[i]);
      expect(g.tokenizer.encode(p).ids).toEqual(ref.clip_input_ids[i]);
      expect(t5.tokenizer.encode(p).ids).toEqual(ref.t5_input_ids[i]);
    });
  });

  it('composes encoder_hidden_states and pooled_projections as diffusers does', async () => {
    const c = await sd3.conditioning({ prompts: [{ text: ref.prompts[0] }] });
    const both = (name: string) => {
      const input = c.inputs.find((i) => i.name === name)!;
      return [Float32Array.from([...input.cond, ...input.uncond!]), [2, ...input.rowDims]] as [Float32Array, number[]];
    };
    expectMatches(...both('encoder_hidden_states'), ref[key('encoder_hidden_states')]);
    expectMatches(...both('pooled_projections'), ref[key('pooled_projections')]);
  });

  it('transformer out_hidden_states from the composed inputs', async () => {
    const c = await sd3.conditioning({ prompts: [{ text: ref.prompts[0] }] });
    const feeds = Object.fromEntries(c.inputs.map((i) => [i.name, { data: Float32Array.from([...i.cond, ...i.uncond!]), dims: [2, ...i.rowDims] }]));
    const out = await sd3.model.unet.run({ hidden_states: { data: det(2 * 4 * 16 * 16), dims: [2, 4, 16, 16] }, timestep: { data: [500, 500], dims: [2] }, ...feeds });
    expectMatches(out.out_hidden_states.data, out.out_hidden_states.dims, ref[key('transformer.out_hidden_states')]);
  });

  it('reads the folder: three encoders, the transformer, scaling and shift factors, 4 latent channels', () => {
    expect(sd3.hasT5).toBe(true);
    expect(sd3.model.encoders.map((e) => e.suffix)).toEqual(['', '_2', '_3']);
    expect(sd3.model.scalingFactor).toBeCloseTo(0.34843, 6);
    expect(sd3.model.shiftFactor).toBeCloseTo(-0.4966, 6);
    expect(sd3.model.latentChannels).toBe(4);
    expect([sd3.nativeWidth, sd3.nativeHeight]).toEqual([128, 128]);
    expect(sd3.describe()).toMatchObject({ family: 'stable-diffusion-3', samplers: ['FLOW_MATCH_EULER'] });
  });
});

describe('tiny-sd3: what a person sees', () => {
  const base = (text: string, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompts: [{ text }], seed: 42, ...extra });

  it.each([
    ['a red circle on a blue background', red, isBlue],
    ['a yellow square on a black background', yellow, isDark],
    ['a green triangle on a white background', green, isWhite],
    ['a purple circle on a yellow background', purple, isYellowish],
  ] as const)('%s: the background in the corners, a clear share of the object colour', async (prompt, object, background) => {
    const { images } = await sd3.generate(base(prompt));
    const { corners } = centreAndCorners(await pixels(images[0].data));
    for (const c of corners) expect(c, `corner ${c}`).toSatisfy(background);
    expect(await share(images[0].data, object)).toBeGreaterThan(0.05);
  });

  it('defaults to SD3\'s 28 steps and the flow sampler; any other sampler is a 400 naming the valid one', async () => {
    const steps: number[] = [];
    const { images } = await sd3.generate(base('a red circle on a blue background', { onProgress: (p) => steps.push(p.step) }));
    expect(steps).toHaveLength(28);
    expect(readPngText(images[0].data).parameters).toMatch(/Steps: 28, Sampler: Euler, CFG scale: 7/);
    expect(() => sd3.checkInputs({ prompts: [{ text: 'a' }], sampler: 'K_EULER' })).toThrow(/sampler K_EULER cannot be used with Stable Diffusion 3 engines; valid samplers: FLOW_MATCH_EULER/);
    expect(sd3.checkInputs({ prompts: [{ text: 'a' }], sampler: 'FLOW_MATCH_EULER' }).steps).toBe(28);
  });

  it('runs without T5: zeros stand in for its states, as diffusers does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-sd3-no-t5-'));
    try {
      cpSync(DIR, dir, { recursive: true });
      rmSync(join(dir, 'text_encoder_3'), { recursive: true });
      const noT5 = (await loadPipeline(dir)) as StableDiffusion3Pipeline;
      try {
        expect(noT5.hasT5).toBe(false);
        const c = await noT5.conditioning(base('a red circle on a blue background'));
        const hidden = c.inputs[0];
        expect(hidden.rowDims).toEqual([154, 192]);
        // The T5 rows (tokens 77..153) are zeros.
        expect(absSum(hidden.cond.subarray(77 * 192))).toBe(0);
        const { images } = await noT5.generate(base('a red circle on a blue background'));
        expect([images[0].width, images[0].height]).toEqual([128, 128]);
        // tiny-sd3 was trained with T5: without it the colours are not promised, only a different image.
        const withT5 = (await sd3.generate(base('a red circle on a blue background'))).images[0].data;
        expect(Buffer.compare(images[0].data, withT5)).not.toBe(0);
      } finally {
        await noT5.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('image-to-image keeps the init image\'s background; masking keeps every pixel outside the mask', async () => {
    const init = (await sd3.generate(base('a yellow square on a black background'))).images[0].data;
    const out = await sd3.generate(base('a red circle on a blue background', { initImage: init, imageStrength: 0.9 }));
    const { corners } = centreAndCorners(await pixels(out.images[0].data));
    for (const c of corners) expect(c, `corner ${c}`).toSatisfy(isDark);
    const sharp = (await import('sharp')).default;
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000' } })
      .composite([{ input: await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } }).png().toBuffer(), left: 32, top: 32 }])
      .png()
      .toBuffer();
    const masked = await pixels((await sd3.generate(base('a red circle on a blue background', { initImage: init, maskImage: mask, maskSource: 'MASK_IMAGE_WHITE' }))).images[0].data);
    const original = await pixels(init);
    for (const [x, y] of [[0, 0], [127, 0], [5, 120], [127, 127]]) {
      for (let c = 0; c < 3; c++) expect(masked.data[(y * 128 + x) * 3 + c]).toBe(original.data[(y * 128 + x) * 3 + c]);
    }
    expect(meanColour(masked, 0, 0, 12)).toSatisfy(isDark);
  });
});
