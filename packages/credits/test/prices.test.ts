import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { displayCredits, PriceFileError, PriceTable, toCredits } from '../src/index';

const dir = mkdtempSync(join(tmpdir(), 'sdq-prices-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function priceFile(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('the shipped price table', () => {
  const prices = PriceTable.load();

  it.each([
    // Stability's published SD 1.x figures, micro-exact.
    { engine: 'stable-diffusion-v1-5', width: 512, height: 512, steps: 30, micro: 200_053, shown: '0.20' },
    { engine: 'stable-diffusion-v1-5', width: 1024, height: 1024, steps: 30, micro: 1_898_746, shown: '1.90' },
    // 512x512 at 50 steps: 2.16e-6 * 92,617 * 50 / 30 = 0.33342120 -> 333,421 micro-credits.
    { engine: 'stable-diffusion-v1-5', width: 512, height: 512, steps: 50, micro: 333_421, shown: '0.33' },
    // The tiny engine at its native size.
    { engine: 'tiny-sd', width: 128, height: 128, steps: 30, micro: 200_000, shown: '0.20' },
    { engine: 'tiny-sd', width: 128, height: 128, steps: 15, micro: 100_000, shown: '0.10' },
    { engine: 'tiny-sd', width: 256, height: 128, steps: 30, micro: 400_000, shown: '0.40' },
    // Under the offset the formula is negative: the minimum, 0.01, applies.
    { engine: 'stable-diffusion-v1-5', width: 128, height: 128, steps: 30, micro: 10_000, shown: '0.01' },
    // Just over the offset: 2.16e-6 * 2,505 * 10 / 30 = 0.0018036, under the minimum.
    { engine: 'stable-diffusion-v1-5', width: 448, height: 384, steps: 10, micro: 10_000, shown: '0.01' },
    // Stability's SDXL 1.0: 0.9 per image at 30 steps or fewer, whatever the size; 0.9 x steps / 30 above.
    { engine: 'stable-diffusion-xl-1024-v1-0', width: 1024, height: 1024, steps: 30, micro: 900_000, shown: '0.90' },
    { engine: 'stable-diffusion-xl-1024-v1-0', width: 1536, height: 640, steps: 10, micro: 900_000, shown: '0.90' },
    { engine: 'stable-diffusion-xl-1024-v1-0', width: 1024, height: 1024, steps: 50, micro: 1_500_000, shown: '1.50' },
    { engine: 'stable-diffusion-xl-1024-v1-0', width: 1024, height: 1024, steps: 31, micro: 930_000, shown: '0.93' },
    { engine: 'tiny-sdxl', width: 128, height: 128, steps: 25, micro: 900_000, shown: '0.90' },
    { engine: 'tiny-sdxl', width: 128, height: 128, steps: 47, micro: 1_410_000, shown: '1.41' },
    // Stability's SD3: flat per image, whatever the size or the steps.
    { engine: 'stable-diffusion-3-large', width: 1024, height: 1024, steps: 28, micro: 6_500_000, shown: '6.50' },
    { engine: 'stable-diffusion-3-medium', width: 1536, height: 640, steps: 150, micro: 3_500_000, shown: '3.50' },
  ])('$engine $width x $height, $steps steps = $micro micro-credits ($shown)', ({ engine, width, height, steps, micro, shown }) => {
    const cost = prices.generation(engine, { width, height, steps });
    expect(cost).toEqual({ per_image: micro, samples: 1, total: micro });
    expect(displayCredits(cost.total)).toBe(shown);
  });

  it('multiplies the per-image price (rounded first) by the samples', () => {
    expect(prices.generation('stable-diffusion-v1-5', { width: 512, height: 512, steps: 30, samples: 4 })).toEqual({ per_image: 200_053, samples: 4, total: 800_212 });
    expect(prices.generation('tiny-sd', { width: 128, height: 128, steps: 30, samples: 10 }).total).toBe(2_000_000);
  });

  it('prices an upscale at a flat 0.20 per image, whatever the engine', () => {
    expect(prices.upscale('tiny-upscaler-x2')).toEqual({ per_image: 200_000, samples: 1, total: 200_000 });
    expect(prices.upscale('esrgan-v1-x2plus', { samples: 3 }).total).toBe(600_000);
  });

  it("prices each v2beta service per call with Stability's figures, whatever the size or steps", () => {
    const perCall: [string, number][] = [
      ['core', 3], ['ultra', 8], ['sd3.5-large', 6.5], ['sd3.5-large-turbo', 4], ['sd3.5-medium', 3.5], ['sd3.5-flash', 2.5],
      ['inpaint', 3], ['outpaint', 4], ['erase', 3],
    ];
    for (const [service, credits] of perCall) {
      for (const size of [{ width: 128, height: 128, steps: 10 }, { width: 1024, height: 1024, steps: 50 }]) {
        expect(toCredits(prices.generation(`v2beta/${service}`, size).total), service).toBe(credits);
      }
    }
    for (const [service, credits] of [['upscale-fast', 1], ['upscale-conservative', 25], ['upscale-creative', 25]] as const) {
      expect(toCredits(prices.upscale(`v2beta/${service}`, { samples: 1 }).total), service).toBe(credits);
    }
  });

  it('shows amounts as JSON numbers and rounded decimals', () => {
    expect(JSON.stringify({ credits: toCredits(9_800_000) })).toBe('{"credits":9.8}');
    expect(toCredits(200_053)).toBe(0.200053);
    expect(displayCredits(1_898_746)).toBe('1.90');
  });

  it('refuses sizes that are not positive integers', () => {
    expect(() => prices.generation('tiny-sd', { width: 0, height: 128, steps: 30 })).toThrow('width must be a positive integer (got 0)');
    expect(() => prices.generation('tiny-sd', { width: 128, height: 128, steps: 30, samples: 1.5 })).toThrow('samples must be a positive integer');
  });
});

describe('an operator price file', () => {
  it('overrides the default, an engine, and adds engines, field by field', () => {
    const file = priceFile('override.json', {
      default: { min_credits: 0.05, upscale: 0.5 },
      engines: { 'custom-engine-v1': { k: 4.32e-6 }, 'tiny-sd': { offset: 8192 } },
    });
    const prices = PriceTable.load({ file });
    // The default's k and offset stand; its minimum and upscale price changed.
    expect(prices.generation('stable-diffusion-v1-5', { width: 512, height: 512, steps: 30 }).total).toBe(200_053);
    expect(prices.generation('stable-diffusion-v1-5', { width: 128, height: 128, steps: 30 }).total).toBe(50_000);
    expect(prices.upscale('tiny-upscaler-x2').total).toBe(500_000);
    // A new engine: twice the k, the default's offset: 4.32e-6 * 92,617 = 0.40010544.
    expect(prices.generation('custom-engine-v1', { width: 512, height: 512, steps: 30 }).total).toBe(400_105);
    // tiny-sd keeps its shipped k, with the operator's offset: half the pixels are free.
    expect(prices.generation('tiny-sd', { width: 128, height: 128, steps: 30 }).total).toBe(100_000);
    expect(prices.engineIds().filter((id) => !id.startsWith('v2beta/'))).toEqual(['custom-engine-v1', 'stable-diffusion-3-large', 'stable-diffusion-3-medium', 'stable-diffusion-xl-1024-v1-0', 'tiny-sd', 'tiny-sdxl']);
  });

  it.each([
    { name: 'a wrong type', file: 'bad-type.json', content: { engines: { 'tiny-sd': { k: '2e-6' } } }, message: /bad-type\.json: engines\.tiny-sd\.k: .*number/ },
    { name: 'an unknown field', file: 'unknown-field.json', content: { default: { K: 1 } }, message: /unknown-field\.json: default: .*"K"/ },
    { name: 'a negative k', file: 'negative-k.json', content: { default: { k: -1 } }, message: /negative-k\.json: default\.k: / },
    {
      name: 'too many decimals',
      file: 'decimals.json',
      content: { default: { min_credits: 0.0000001 } },
      message: /decimals\.json: default\.min_credits: must be a number of credits >= 0 with at most 6 decimal places/,
    },
    { name: 'not JSON', file: 'not-json.json', content: '{ "default": ', message: /not-json\.json: not valid JSON/ },
  ])('is refused with $name, naming the file and the field', ({ file: name, content, message }) => {
    const file = priceFile(name, content);
    const load = () => PriceTable.load({ file });
    expect(load).toThrow(PriceFileError);
    expect(load).toThrow(message);
    expect(load).toThrow(`Invalid price file ${file}`);
  });

  it('is refused when missing', () => {
    expect(() => PriceTable.load({ file: join(dir, 'nope.json') })).toThrow(/Invalid price file .*nope\.json: cannot read it \(ENOENT\)/);
  });

  it('must leave every engine a complete price', () => {
    expect(() => PriceTable.from({ engines: { a: { k: 1e-6 } } })).toThrow('engine');
  });
});
