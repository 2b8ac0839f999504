import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxClock, OnnxModel } from '../src/backends/onnx';
import { loadStableDiffusionModel, type StableDiffusionModel } from '../src/model';
import { absSum, det, expectMatches, type Ref } from './reference';

describe.each([
  ['tiny-sd', 'models/tiny-sd', 'models/tiny-sd/reference.json'],
  // Same graphs with float16 inputs and outputs: the backend converts at the edges.
  ['tiny-sd-fp16', '../shared/models/tiny-sd-fp16', 'models/tiny-sd/reference.json'],
])('%s graphs against reference.json', (_name, dir, refPath) => {
  const ref = JSON.parse(readFileSync(refPath, 'utf8'));
  let model: StableDiffusionModel;
  // fp16 tensors carry ~3 significant digits; the check is about dtype, layout and plumbing.
  const fp16 = dir.includes('fp16');
  const check = (data: Float32Array, dims: number[], r: Ref) => {
    if (!fp16) return expectMatches(data, dims, r);
    expect(dims).toEqual(r.shape);
    expect(Math.abs(absSum(data) - r.abs_sum) / r.abs_sum).toBeLessThan(1e-2);
  };

  beforeAll(async () => {
    model = await loadStableDiffusionModel(dir);
  });
  afterAll(async () => {
    for (const m of [model.textEncoder, model.unet, model.vaeDecoder, model.vaeEncoder]) await m?.dispose();
  });

  it('tokenizes the reference prompts', () => {
    ref.prompts.forEach((p: string, i: number) => expect(model.tokenizer.encode(p).ids).toEqual(ref.input_ids[i]));
  });

  it('text_encoder last_hidden_state', async () => {
    const out = await model.textEncoder.run({ input_ids: { data: ref.input_ids.flat(), dims: [3, 77] } });
    check(out.last_hidden_state.data, out.last_hidden_state.dims, ref['text_encoder.last_hidden_state']);
  });

  it('unet out_sample', async () => {
    const enc = await model.textEncoder.run({ input_ids: { data: ref.input_ids.flat(), dims: [3, 77] } });
    const hidden = enc.last_hidden_state.data.slice(0, 2 * 77 * enc.last_hidden_state.dims[2]);
    const out = await model.unet.run({
      sample: { data: det(2 * 4 * 16 * 16), dims: [2, 4, 16, 16] },
      timestep: { data: [500], dims: [1] },
      encoder_hidden_states: { data: hidden, dims: [2, 77, enc.last_hidden_state.dims[2]] },
    });
    const key = Object.keys(ref).find((k) => k.startsWith('unet.out_sample'))!;
    check(out.out_sample.data, out.out_sample.dims, ref[key]);
  });

  it('vae_decoder sample', async () => {
    const out = await model.vaeDecoder.run({ latent_sample: { data: det(4 * 16 * 16), dims: [1, 4, 16, 16] } });
    const key = Object.keys(ref).find((k) => k.startsWith('vae_decoder.sample'))!;
    check(out.sample.data, out.sample.dims, ref[key]);
  });

  it('vae_encoder latent_sample', async () => {
    const out = await model.vaeEncoder!.run({ sample: { data: det(3 * 128 * 128), dims: [1, 3, 128, 128] } });
    const key = Object.keys(ref).find((k) => k.startsWith('vae_encoder.latent_sample'))!;
    check(out.latent_sample.data, out.latent_sample.dims, ref[key]);
  });

  it('reads sizes and scaling from the folder', () => {
    expect(model.scalingFactor).toBeCloseTo(0.34697, 6);
    expect([model.nativeWidth, model.nativeHeight]).toEqual([128, 128]);
    expect(model.vaeScaleFactor).toBe(8);
    expect(model.unetMultiple).toBe(4);
  });
});

describe('tiny-upscaler-x2 graph', () => {
  it('output against reference.json', async () => {
    const ref = JSON.parse(readFileSync('models/tiny-sd/reference.json', 'utf8'));
    const model = await OnnxModel.load(join('models/tiny-upscaler-x2/model.onnx'), {}, new OnnxClock());
    const input = det(3 * 32 * 32).map((v) => v * 0.5 + 0.5);
    const out = await model.run({ input: { data: input, dims: [1, 3, 32, 32] } });
    const key = Object.keys(ref).find((k) => k.startsWith('upscaler.output'))!;
    expectMatches(out.output.data, out.output.dims, ref[key]);
    await model.dispose();
  });
});
