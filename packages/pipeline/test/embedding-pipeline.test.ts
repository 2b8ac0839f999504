/**
 * Textual-inversion embeddings through the pipeline: tiny-sd does not know the word `crimson`; with the
 * fixture embedding (A1111 form and diffusers form) it draws a crimson circle red, without it not; the
 * base pipeline and its tokenizer are unchanged afterwards; an embedding for another family is refused.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEmbedding } from '../src/embedding';
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
