/**
 * Hires fix on sdq's own API (Stability v1 text-to-image's `hires_fix`): the second pass's size by scale
 * or width and height, by a latent mode, Lanczos or the upscaler engine, priced as both passes; its
 * mistakes refused before any charge. (A1111's enable_hr is in a1111.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountWith, authed, balanceOf, bluish, redish, rgbOf, type Stack, startStack } from './support';

let stack: Stack;
let key: string;
beforeAll(async () => {
  stack = await startStack({ workerEnv: { ENGINES: 'tiny-sd,tiny-upscaler-x2' } });
  key = await accountWith(stack.service, 'hires', 100);
}, 60_000);
afterAll(async () => {
  await stack?.close();
});

const PROMPT = 'a large red circle in the center on a blue background';
const post = (body: Record<string, unknown>, accept = 'image/png', query = '') =>
  fetch(`${stack.service.url}/v1/generation/tiny-sd/text-to-image${query}`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', accept }), body: JSON.stringify({ text_prompts: [{ text: PROMPT }], steps: 10, seed: 8, ...body }) });
const price = async (body: Record<string, unknown>) => ((await (await post(body, 'application/json', '?dry_run=true')).json()) as { credits: number }).credits;

describe('hires_fix on Stability v1 text-to-image', () => {
  it('scale 2 by Latent, Lanczos and the upscaler engine: a 256x256 image of the prompt, both passes charged once', async () => {
    const both = (await price({})) + (await price({ width: 256, height: 256, steps: 12 }));
    for (const upscaler of ['Latent', 'Lanczos', 'tiny-upscaler-x2']) {
      const hires = { scale: 2, upscaler, steps: 12, strength: 0.6 };
      expect(await price({ hires_fix: hires })).toBeCloseTo(both, 6);
      const before = await balanceOf(stack.service, key);
      const res = await post({ hires_fix: hires });
      expect([upscaler, res.status]).toEqual([upscaler, 200]);
      const rgb = await rgbOf(Buffer.from(await res.arrayBuffer()));
      expect([rgb.width, rgb.height]).toEqual([256, 256]);
      expect(redish(rgb.at(128, 128))).toBe(true);
      expect(bluish(rgb.at(6, 6))).toBe(true);
      expect(before - (await balanceOf(stack.service, key))).toBeCloseTo(both, 6);
    }
    // width and height instead of scale
    const sized = await post({ hires_fix: { width: 256, height: 192, upscaler: 'Latent (nearest-exact)' } });
    const rgb = await rgbOf(Buffer.from(await sized.arrayBuffer()));
    expect([rgb.width, rgb.height]).toEqual([256, 192]);
  });

  it('mistakes are 400s before any charge', async () => {
    const before = await balanceOf(stack.service, key);
    const cases: [Record<string, unknown>, string][] = [
      [{ scale: 1.3 }, 'invalid_height_or_width'],
      [{ width: 256 }, 'invalid_height_or_width'],
      [{}, 'bad_request'],
      [{ scale: 2, width: 256, height: 256 }, 'bad_request'],
      [{ scale: 2, upscaler: 'R-ESRGAN 4x+' }, 'bad_request'],
      [{ scale: 2, sampler: 'NOT_A_SAMPLER' }, 'invalid_sampler'],
      [{ scale: 2, strength: 2 }, 'bad_request'],
      [{ width: 100, height: 256 }, 'invalid_height_or_width'],
    ];
    for (const [hires, name] of cases) {
      const res = await post({ hires_fix: hires }, 'application/json');
      expect([hires, res.status, ((await res.json()) as { name: string }).name]).toEqual([hires, 400, name]);
    }
    expect(await balanceOf(stack.service, key)).toBe(before);
  });
});
