/**
 * Textual-inversion embeddings through the pipeline: tiny-sd does not know the word `crimson`; with the
 * fixture embedding (A1111 form and diffusers form) it draws a crimson circle red, without it not; the
 * base pipeline and its tokenizer are unchanged afterwards; an embedding for another family is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Embedding, readEmbedding } from '../src/embedding';
import { float16BitsToFloat32 } from '../src/fp16';
import { ONNX_FLOAT, readOnnxGraph, tokenTableOf } from '../src/onnx-graph';
import type { ClipTokenizer } from '../src/tokenizer/clip-tokenizer';
import { withEmbeddingRows } from '../src/embedding-graph';
import { loadPipeline } from '../src/families';
import { withAdapters } from '../src/lora-pipeline';
import type { DiffusionPipeline } from '../src/pipeline';
import { readSafetensorsFile } from '../src/safetensors';
import { centreAndCorners, isBlue, isRed, pixels } from './images';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');
const PROMPT = 'a large crimson circle in the center on a blue background';
const embeddingOf = (file: string) => readEmbedding(readSafetensorsFile(join(ADAPTERS, file)), 'crimson');

let base: DiffusionPipeline;
beforeAll(async () => {
  base = await loadPipeline('../shared/models/tiny-sd');
});
afterAll(async () => {
  await base?.dispose();
});

const draw = async (pipeline: DiffusionPipeline, text = PROMPT) => {
  const result = await pipeline.generate({ prompts: [{ text }], seed: 3, steps: 20 });
  const img = await pixels(result.images[0].data);
  // the pixels, not the PNG: its infotext carries the prompt
  return { png: img.data, ...centreAndCorners(img) };
};

describe('a pipeline with an embedding', () => {
  it('draws crimson red with the embedding, in either file form, and not without it', async () => {
    const plain = await draw(base);
    expect(plain.centre, `centre without the embedding ${plain.centre}`).not.toSatisfy(isRed);
    for (const file of ['crimson.safetensors', 'crimson-diffusers.safetensors']) {
      const set = await withAdapters(base, { loras: [], embeddings: [{ name: 'crimson', embedding: embeddingOf(file) }] });
      try {
        const drawn = await draw(set.pipeline);
        expect(drawn.centre, `${file}: centre ${drawn.centre}`).toSatisfy(isRed);
        for (const corner of drawn.corners) expect(corner, `${file}: corner ${corner}`).toSatisfy(isBlue);
        // the word in any case, as A1111 matches it
        expect((await draw(set.pipeline, PROMPT.replace('crimson', 'Crimson'))).png.equals(drawn.png)).toBe(true);
        // a prompt without the word draws as the base does: the table's own rows are unchanged
        const red = 'a large red circle in the center on a blue background';
        expect((await draw(set.pipeline, red)).png.equals((await draw(base, red)).png)).toBe(true);
      } finally {
        await set.dispose();
      }
    }
    expect((await draw(base)).png.equals(plain.png)).toBe(true);
  });

  it('gives the word negative ids, so the pooled output stays at the end-of-text token', () => {
    const { words } = withEmbeddingRows('../shared/models/tiny-sd/text_encoder/model.onnx', undefined, [{ name: 'crimson', embedding: embeddingOf('crimson.safetensors') }], false);
    const ids = words.get('crimson')!;
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) expect(id).toBeLessThan(0);
  });

  it('refuses an embedding of another width, naming it', async () => {
    const wide = embeddingOf('crimson.safetensors');
    const other = { vectors: { data: new Float32Array(wide.vectors.count * 768), count: wide.vectors.count, dim: 768 } };
    await expect(withAdapters(base, { loras: [], embeddings: [{ name: 'sd15-word', embedding: other }] })).rejects.toThrow(/embedding sd15-word is 768 wide; this text encoder's tokens are 128/);
  });
});

/**
 * An exact check of where the rows go and what the ids address: an embedding whose vectors are the token
 * table's own rows for "red" must give "crimson" exactly the conditioning "red" gets from the base
 * pipeline: every hidden state and, on SDXL, the pooled embedding (which CLIP's export takes at the
 * highest id: new ids above the vocabulary would move it onto the new word).
 */
describe('an embedding equal to an existing token', () => {
  const rowsOf = (encoderPath: string, id: number) => {
    const bytes = readFileSync(encoderPath);
    const graph = readOnnxGraph(bytes);
    const table = tokenTableOf(graph.nodes, (name) => graph.initializers.get(name)?.dims)!;
    const init = graph.initializers.get(table.name)!;
    const where = init.bytes as { kind: 'inline'; offset: number; length: number };
    const raw = new Uint8Array(bytes.subarray(where.offset, where.offset + where.length));
    const dim = table.dims[1];
    const all = init.dataType === ONNX_FLOAT ? new Float32Array(raw.slice().buffer) : float16BitsToFloat32(new Uint16Array(raw.slice().buffer));
    return { data: all.slice(id * dim, (id + 1) * dim), count: 1, dim };
  };

  for (const folder of ['../shared/models/tiny-sd', '../shared/models/tiny-sdxl', '../shared/models/tiny-sd-fp16']) {
    it(`${folder.split('/').pop()}: "crimson" as the rows of "red" conditions exactly as "red" does`, async () => {
      const pipeline = await loadPipeline(folder);
      try {
        const pairs = pipeline.model.encoders;
        const redId = (pairs[0].tokenizer as ClipTokenizer).encode('red').ids[1];
        const embedding: Embedding = { vectors: rowsOf(join(folder, 'text_encoder/model.onnx'), redId) };
        if (pairs.length > 1) embedding.vectors2 = rowsOf(join(folder, 'text_encoder_2/model.onnx'), (pairs[1].tokenizer as ClipTokenizer).encode('red').ids[1]);
        const set = await withAdapters(pipeline, { loras: [], embeddings: [{ name: 'crimson', embedding }] });
        try {
          const base = await pipeline.conditioning({ prompts: [{ text: 'a large red circle' }], cfgScale: 7 });
          const swapped = await set.pipeline.conditioning({ prompts: [{ text: 'a large crimson circle' }], cfgScale: 7 });
          expect(swapped.inputs.map((i) => i.name)).toEqual(base.inputs.map((i) => i.name));
          for (const [i, input] of base.inputs.entries()) expect(Array.from(swapped.inputs[i].cond), input.name).toEqual(Array.from(input.cond));
        } finally {
          await set.dispose();
        }
      } finally {
        await pipeline.dispose();
      }
    });
  }
});
