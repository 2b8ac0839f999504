/**
 * What a person sees: tiny-sd draws "a large red circle in the center on a blue background" red, and with
 * the fixture LoRA (it makes every object green) at weight 1 green, through the pipeline; at 0.5 the
 * picture changes again; the base pipeline is unchanged afterwards, and a LoRA of another model is refused.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../src/families';
import { readLora } from '../src/lora';
import { withLoras } from '../src/lora-pipeline';
import type { DiffusionPipeline } from '../src/pipeline';
import { readSafetensorsFile } from '../src/safetensors';
import { centreAndCorners, isBlue, isRed, pixels, type Rgb } from './images';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');
const PROMPT = 'a large red circle in the center on a blue background';
const isGreen = ([r, g, b]: Rgb) => g > 0.35 && g > r + 0.1 && g > b + 0.1;
const modules = readLora(readSafetensorsFile(join(ADAPTERS, 'green-objects.safetensors')));

let base: DiffusionPipeline;
beforeAll(async () => {
  // the export whose nodes carry module names (models/tiny-sd's older one has none)
  base = await loadPipeline('../shared/models/tiny-sd');
});
afterAll(async () => {
  await base?.dispose();
});

const draw = async (pipeline: DiffusionPipeline) => {
  const result = await pipeline.generate({ prompts: [{ text: PROMPT }], seed: 3, steps: 20 });
  return { png: result.images[0].data, ...centreAndCorners(await pixels(result.images[0].data)) };
};

describe('a pipeline with a LoRA', () => {
  it('draws the circle green at weight 1 and red without it; the base pipeline stays as it was', async () => {
    const before = await draw(base);
    expect(before.centre, `centre ${before.centre}`).toSatisfy(isRed);
    const green = await withLoras(base, [{ name: 'green-objects', weight: 1, modules }]);
    try {
      expect(green.applied.get('green-objects')).toEqual({ matched: 88, unmatched: [] });
      const after = await draw(green.pipeline);
      expect(after.centre, `centre ${after.centre}`).toSatisfy(isGreen);
      for (const corner of after.corners) expect(corner, `corner ${corner}`).toSatisfy(isBlue);
      const half = await withLoras(base, [{ name: 'green-objects', weight: 0.5, modules }]);
      try {
        const between = await draw(half.pipeline);
        expect(between.png.equals(after.png)).toBe(false);
        expect(between.png.equals(before.png)).toBe(false);
      } finally {
        await half.dispose();
      }
    } finally {
      await green.dispose();
    }
    expect((await draw(base)).png.equals(before.png)).toBe(true);
  });

  it('refuses a LoRA that matches none of the engine\'s layers, naming the engine', async () => {
    const other = modules.map((m) => ({ ...m, path: `other_${m.path}` }));
    await expect(withLoras(base, [{ name: 'other-model', weight: 1, modules: other }])).rejects.toThrow(/LoRA other-model matches none of tiny-sd's layers \(0 of 88 modules/);
  });
});
