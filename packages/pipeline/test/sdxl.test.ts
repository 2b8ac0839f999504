/**
 * Stable Diffusion XL on tiny-sdxl: both tokenizers, the composed conditioning and the UNet against
 * models/tiny-sdxl/reference.json, then what a person sees for every sampler, force_zeros_for_empty_prompt,
 * micro-conditioning, and every mode.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAMILIES, loadPipeline, PipelineError, StableDiffusionPipeline, StableDiffusionXLPipeline, type GenerateRequest } from '../src';
import { centreAndCorners, isBlack, isBlue, isRed, isYellow, pixels } from './images';
import { absSum, det, expectMatches, type Ref } from './reference';

const DIR = 'models/tiny-sdxl';
const SAMPLERS = FAMILIES.find((f) => f.id === 'stable-diffusion-xl')!.samplers;
const ref = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8'));
const key = (prefix: string) => Object.keys(ref).find((k) => k.startsWith(prefix))!;

let sdxl: StableDiffusionXLPipeline;
beforeAll(async () => {
  const loaded = await loadPipeline(DIR);
  expect(loaded).toBeInstanceOf(StableDiffusionXLPipeline);
  sdxl = loaded as StableDiffusionXLPipeline;
});
afterAll(async () => {
  await sdxl?.dispose();
});

describe('tiny-sdxl against reference.json', () => {
  it('tokenizes with each tokenizer and its own pad token', () => {
    const [one, two] = sdxl.model.encoders;
    ref.prompts.forEach((p: string, i: number) => {
      expect(one.tokenizer.encode(p).ids).toEqual(ref.input_ids[i]);
      expect(two.tokenizer.encode(p).ids).toEqual(ref.input_ids_2[i]);
    });
  });

  it('composes encoder_hidden_states (penultimate states, concatenated) and text_embeds as diffusers does', async () => {
    const c = await sdxl.conditioning({ prompts: [{ text: ref.prompts[0] }], cfgScale: 7 });
    const byName = Object.fromEntries(c.inputs.map((i) => [i.name, i]));
    const both = (name: string) => Float32Array.from([...byName[name].cond, ...byName[name].uncond!]);
    expectMatches(both('encoder_hidden_states'), [2, ...byName.encoder_hidden_states.rowDims], ref[key('encoder_hidden_states')]);
    expectMatches(both('text_embeds'), [2, ...byName.text_embeds.rowDims], ref[key('text_embeds')]);
    expect([Array.from(byName.time_ids.cond), Array.from(byName.time_ids.uncond!)]).toEqual(ref.time_ids);
  });

  it('UNet out_sample from the composed inputs', async () => {
    const c = await sdxl.conditioning({ prompts: [{ text: ref.prompts[0] }], cfgScale: 7 });
    const feeds = Object.fromEntries(c.inputs.map((i) => [i.name, { data: Float32Array.from([...i.cond, ...i.uncond!]), dims: [2, ...i.rowDims] }]));
    const out = await sdxl.model.unet.run({ sample: { data: det(2 * 4 * 16 * 16), dims: [2, 4, 16, 16] }, timestep: { data: [500], dims: [1] }, ...feeds });
    expectMatches(out.out_sample.data, out.out_sample.dims, ref[key('unet.out_sample')]);
  });

  it('reads what it needs from the folder: two encoders, sizes, scaling factor, latent channels', () => {
    expect(sdxl.model.encoders).toHaveLength(2);
    expect([sdxl.nativeWidth, sdxl.nativeHeight]).toEqual([128, 128]);
    expect(sdxl.model.scalingFactor).toBeCloseTo(0.34697, 6);
    expect(sdxl.model.shiftFactor).toBe(0);
    expect(sdxl.model.latentChannels).toBe(4);
    expect(sdxl.family.id).toBe('stable-diffusion-xl');
    // The same description the API reads from the folder's JSON.
    expect(sdxl.describe()).toMatchObject({ id: 'tiny-sdxl', family: 'stable-diffusion-xl', nativeWidth: 128, modes: ['text-to-image', 'image-to-image', 'masking'], sizes: { step: 64, maxPixels: 262144 } });
  });
});

describe('tiny-sdxl: what a person sees', () => {
  const base: GenerateRequest = { prompts: [{ text: 'a red circle on a blue background' }], steps: 25, seed: 42 };
  // The two order-4 multistep samplers (PNDM, K_LMS) drift on this model below ~50 steps, as on tiny-sd.
  const stepsFor = (sampler: string) => (sampler === 'PNDM' || sampler === 'K_LMS' ? 50 : 25);
  const looks = async (png: Buffer) => centreAndCorners(await pixels(png));

  it.each(SAMPLERS)('%s: a red circle on a blue background, and a yellow square on black', async (sampler) => {
    const red = await looks((await sdxl.generate({ ...base, sampler, steps: stepsFor(sampler) })).images[0].data);
    expect(red.centre, `centre ${red.centre}`).toSatisfy(isRed);
    for (const c of red.corners) expect(c, `corner ${c}`).toSatisfy(isBlue);
    const yellow = await looks((await sdxl.generate({ ...base, prompts: [{ text: 'a yellow square on a black background' }], sampler, steps: stepsFor(sampler) })).images[0].data);
    expect(yellow.centre, `centre ${yellow.centre}`).toSatisfy(isYellow);
    for (const c of yellow.corners) expect(c, `corner ${c}`).toSatisfy(isBlack);
  });

  it('force_zeros_for_empty_prompt: true zeroes the negative conditioning (a different image), false encodes ""', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-sdxl-zeros-'));
    try {
      cpSync(DIR, dir, { recursive: true });
      const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'));
      writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, force_zeros_for_empty_prompt: true }));
      const zeros = (await loadPipeline(dir)) as StableDiffusionXLPipeline;
      try {
        expect(zeros.forceZerosForEmptyPrompt).toBe(true);
        expect(sdxl.forceZerosForEmptyPrompt).toBe(false);
        const c = await zeros.conditioning(base);
        for (const name of ['encoder_hidden_states', 'text_embeds']) expect(absSum(c.inputs.find((i) => i.name === name)!.uncond!)).toBe(0);
        const a = (await sdxl.generate(base)).images[0].data;
        const b = (await zeros.generate(base)).images[0].data;
        expect(Buffer.compare(a, b)).not.toBe(0);
        // With a negative prompt given, both encode it: the same conditioning.
        const neg = { ...base, prompts: [...base.prompts, { text: 'green', weight: -1 }] };
        const u1 = (await sdxl.conditioning(neg)).inputs[0].uncond!;
        const u2 = (await zeros.conditioning(neg)).inputs[0].uncond!;
        expect(absSum(u1)).toBeGreaterThan(0);
        expect(Array.from(u1)).toEqual(Array.from(u2));
      } finally {
        await zeros.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('micro-conditioning and prompt_2 reach the UNet', async () => {
    const c = await sdxl.conditioning({ ...base, originalSize: { width: 512, height: 256 }, cropTopLeft: { top: 8, left: 16 } });
    expect(Array.from(c.inputs.find((i) => i.name === 'time_ids')!.cond)).toEqual([256, 512, 8, 16, 128, 128]);
    const plain = await sdxl.conditioning(base);
    const two = await sdxl.conditioning({ ...base, prompt2: 'a green square' });
    // prompt_2 changes the second encoder's features of every token and the pooled embedding, never the first encoder's.
    const [seq, width] = plain.inputs[0].rowDims;
    const part = (a: Float32Array, from: number, to: number) => Array.from({ length: seq }, (_, k) => Array.from(a.subarray(k * width + from, k * width + to))).flat();
    expect(part(two.inputs[0].cond, 0, 128)).toEqual(part(plain.inputs[0].cond, 0, 128));
    expect(part(two.inputs[0].cond, 128, width)).not.toEqual(part(plain.inputs[0].cond, 128, width));
    expect(Array.from(two.inputs[1].cond)).not.toEqual(Array.from(plain.inputs[1].cond));
  });

  it('image-to-image keeps the init image at strength 1 and ignores it at 0; masking keeps every pixel outside the mask', async () => {
    const init = (await sdxl.generate({ ...base, prompts: [{ text: 'a yellow square on a black background' }] })).images[0].data;
    const kept = await looks((await sdxl.generate({ ...base, initImage: init, imageStrength: 1 })).images[0].data);
    expect(kept.centre, `centre ${kept.centre}`).toSatisfy(isYellow);
    const redone = await looks((await sdxl.generate({ ...base, initImage: init, imageStrength: 0 })).images[0].data);
    expect(redone.centre, `centre ${redone.centre}`).toSatisfy(isRed);
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000' } })
      .composite([{ input: await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } }).png().toBuffer(), left: 32, top: 32 }])
      .png()
      .toBuffer();
    const masked = await pixels((await sdxl.generate({ ...base, initImage: init, maskImage: mask, maskSource: 'MASK_IMAGE_WHITE' })).images[0].data);
    const original = await pixels(init);
    for (const [x, y] of [[0, 0], [127, 0], [5, 120], [127, 127], [20, 64]]) {
      for (let c = 0; c < 3; c++) expect(masked.data[(y * 128 + x) * 3 + c]).toBe(original.data[(y * 128 + x) * 3 + c]);
    }
    expect(centreAndCorners(masked).centre, 'repainted centre').toSatisfy(isRed);
  });
});

describe('the registry', () => {
  it('detects each family from its folder and refuses unknown classes and broken folders with one clear error', async () => {
    const sd = await loadPipeline('models/tiny-sd');
    expect(sd).toBeInstanceOf(StableDiffusionPipeline);
    expect(sd.family.id).toBe('stable-diffusion');
    await sd.dispose();
    const dir = mkdtempSync(join(tmpdir(), 'sdq-unknown-family-'));
    try {
      writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'FluxPipeline' }));
      await expect(loadPipeline(dir)).rejects.toMatchObject({ code: 'invalid_model', message: expect.stringMatching(/_class_name "FluxPipeline" is not a family sdq knows \(known: StableDiffusionPipeline/) });
      cpSync(DIR, dir, { recursive: true });
      rmSync(join(dir, 'text_encoder_2', 'model.onnx'));
      await expect(loadPipeline(dir)).rejects.toMatchObject({ code: 'invalid_model', message: expect.stringMatching(/model file missing: .*text_encoder_2\/model\.onnx/) });
      await expect(loadPipeline(join(dir, 'nope'))).rejects.toBeInstanceOf(PipelineError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
