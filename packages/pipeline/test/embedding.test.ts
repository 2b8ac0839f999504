/** Textual-inversion embeddings in A1111's, diffusers' and SDXL's forms, read into one shape. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbeddingFormatError, readEmbedding } from '../src/embedding';
import { parseSafetensors, readSafetensorsFile } from '../src/safetensors';
import { f32File } from './safetensors-file';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');


describe('embeddings', () => {
  it('reads the A1111 and the diffusers form of crimson as the same vector', () => {
    const a1111 = readEmbedding(readSafetensorsFile(join(ADAPTERS, 'crimson.safetensors')));
    const diffusers = readEmbedding(readSafetensorsFile(join(ADAPTERS, 'crimson-diffusers.safetensors')));
    expect(a1111.vectors).toMatchObject({ count: 1, dim: 128 });
    expect(diffusers.vectors).toMatchObject({ count: 1, dim: 128 });
    expect([...a1111.vectors.data]).toEqual([...diffusers.vectors.data]);
    expect(a1111.vectors2).toBeUndefined();
  });

  it('reads an SDXL embedding (clip_l and clip_g) with several vectors', () => {
    const e = readEmbedding(parseSafetensors(f32File({ clip_l: [3, 768], clip_g: [3, 1280] })));
    expect(e.vectors).toMatchObject({ count: 3, dim: 768 });
    expect(e.vectors2).toMatchObject({ count: 3, dim: 1280 });
  });

  it.each<[string, Record<string, number[]>, RegExp]>([
    ['half an SDXL embedding', { clip_l: [1, 768] }, /needs both clip_l and clip_g/],
    ['SDXL halves of different lengths', { clip_l: [1, 768], clip_g: [2, 1280] }, /clip_l has 1 vectors, clip_g 2/],
    ['a LoRA', { 'lora_unet_x.lora_down.weight': [2, 8], 'lora_unet_x.lora_up.weight': [8, 2] }, /not an embedding/],
    ['a 3-d tensor', { emb_params: [1, 2, 3] }, /not \[dim\] or \[vectors, dim\]/],
    ['too many vectors', { emb_params: [76, 8] }, /76 vectors/],
  ])('refuses %s', (_what, tensors, reason) => {
    expect(() => readEmbedding(parseSafetensors(f32File(tensors)))).toThrow(EmbeddingFormatError);
    expect(() => readEmbedding(parseSafetensors(f32File(tensors)))).toThrow(reason);
  });
});
