/**
 * Prices through the API: Stability's published SD 1.x figures on an engine priced as a full-size one,
 * tiny-sd's own figure, flat upscales, samples, the operator's PRICES_FILE; a dry run charges and queues
 * nothing. Real engines (model folders linked under a temporary MODELS_DIR, as operators name them).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { MODELS_DIR, type Service, startService } from '../e2e/support';
import { balance, Books, call, createAccount, type TestAccount } from './support';

let redis: TestRedis;
let service: Service;
let dir: string;
let alice: TestAccount;

beforeAll(async () => {
  redis = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), 'sdq-prices-'));
  // stable-diffusion-v1-5 is tiny-sd's graphs under a name the price table does not list: the default
  // (full-size SD 1.x) prices apply to it.
  for (const [name, target] of [['tiny-sd', 'tiny-sd'], ['tiny-upscaler-x2', 'tiny-upscaler-x2'], ['esrgan-v1-x2plus', 'tiny-upscaler-x2']]) {
    symlinkSync(join(MODELS_DIR, target), join(dir, name));
  }
  // An SD 1.5-shaped folder (native 512x512, so sizes up to 1024x1024): only its JSON is read by dry runs.
  const sd15 = join(dir, 'stable-diffusion-v1-5');
  for (const [part, config] of [['unet', { sample_size: 64 }], ['vae_decoder', { block_out_channels: [128, 256, 512, 512] }], ['vae_encoder', {}]] as const) {
    mkdirSync(join(sd15, part), { recursive: true });
    writeFileSync(join(sd15, part, 'config.json'), JSON.stringify(config));
  }
  writeFileSync(join(sd15, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
  // Operator prices: esrgan-v1-x2plus costs 0.5 per upscale, everything else as shipped.
  const pricesFile = join(dir, 'prices.json');
  writeFileSync(pricesFile, JSON.stringify({ engines: { 'esrgan-v1-x2plus': { upscale: 0.5 } } }));
  service = await startService(redis, { env: { MODELS_DIR: dir, PRICES_FILE: pricesFile } });
  alice = await createAccount(service, { credits: 10 });
});
afterAll(async () => {
  await service?.close();
  await redis?.close();
  rmSync(dir, { recursive: true, force: true });
});

const t2i = (engine: string, body: Record<string, unknown>) =>
  call(service, alice.api_key, `/v1/generation/${engine}/text-to-image?dry_run=true`, {
    method: 'POST',
    body: JSON.stringify({ text_prompts: [{ text: 'a lighthouse' }], ...body }),
  });

describe('prices', () => {
  it('lists every engine with Stability fields and its prices', async () => {
    const engines = (await (await call(service, alice.api_key, '/v1/engines/list')).json()) as any[];
    const byId = Object.fromEntries(engines.map((e) => [e.id, e]));
    expect(Object.keys(byId).sort()).toEqual(['esrgan-v1-x2plus', 'stable-diffusion-v1-5', 'tiny-sd', 'tiny-upscaler-x2']);
    expect(byId['stable-diffusion-v1-5']).toMatchObject({ type: 'PICTURE', pricing: { kind: 'generation', k: 2.16e-6, offset: 169527, min_credits: 0.01, upscale: null } });
    // tiny-sd: its native 128x128 at 30 steps is 0.20.
    expect(byId['tiny-sd'].pricing).toMatchObject({ kind: 'generation', offset: 0, example: { width: 128, height: 128, steps: 30, credits: 0.2, display: '0.20' } });
    expect(byId['tiny-upscaler-x2'].pricing).toMatchObject({ kind: 'upscale', upscale: 0.2, example: { credits: 0.2 } });
    expect(byId['esrgan-v1-x2plus'].pricing).toMatchObject({ kind: 'upscale', upscale: 0.5 });
  });

  const cases: [string, string, Record<string, unknown>, number, string][] = [
    ['SD 1.x 512x512 at 30 steps', 'stable-diffusion-v1-5', { width: 512, height: 512, steps: 30 }, 0.200053, '0.20'],
    ['SD 1.x 1024x1024 at 30 steps', 'stable-diffusion-v1-5', { width: 1024, height: 1024, steps: 30 }, 1.898746, '1.90'],
    // Each image is rounded to the micro-credit, then multiplied: 2 x 0.400105.
    ['SD 1.x 512x512 at 60 steps, 2 samples', 'stable-diffusion-v1-5', { width: 512, height: 512, steps: 60, samples: 2 }, 0.80021, '0.80'],
    ['SD 1.x under the offset: the minimum', 'stable-diffusion-v1-5', { width: 256, height: 256, steps: 30 }, 0.01, '0.01'],
    ['tiny-sd 128x128 at 30 steps', 'tiny-sd', { steps: 30 }, 0.2, '0.20'],
    ['tiny-sd 128x128 at 10 steps, 3 samples', 'tiny-sd', { steps: 10, samples: 3 }, 0.200001, '0.20'],
  ];
  it.each(cases)('dry run: %s', async (_name, engine, body, credits, display) => {
    const res = await t2i(engine, body);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      dry_run: true,
      engine,
      kind: 'text-to-image',
      credits,
      display,
      credits_per_image: expect.any(Number),
      samples: (body.samples as number) ?? 1,
      balance: 10,
      affordable: true,
    });
  });

  it('prices upscales flat, from the operator file where it names the engine', async () => {
    const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer();
    for (const [engine, credits] of [['tiny-upscaler-x2', 0.2], ['esrgan-v1-x2plus', 0.5]] as const) {
      const body = new FormData();
      body.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'image.png');
      const res = await call(service, alice.api_key, `/v1/generation/${engine}/image-to-image/upscale?dry_run=1`, { method: 'POST', body });
      expect(await res.json()).toMatchObject({ dry_run: true, kind: 'upscale', credits });
    }
  });

  it('a dry run queues and charges nothing, still refuses bad input, and says when the balance is short', async () => {
    const poor = await createAccount(service, { credits: 0.1 });
    const res = await call(service, poor.api_key, '/v1/generation/tiny-sd/text-to-image?dry_run=true', { method: 'POST', body: JSON.stringify({ text_prompts: [{ text: 'x' }] }) });
    expect(await res.json()).toMatchObject({ credits: 0.2, balance: 0.1, affordable: false });
    const bad = await call(service, poor.api_key, '/v1/generation/tiny-sd/text-to-image?dry_run=true', { method: 'POST', body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 5 }) });
    expect(bad.status).toBe(400);
    expect((await call(service, poor.api_key, '/v1/generation/tiny-sd/text-to-image?dry_run=maybe', { method: 'POST', body: '{}' })).status).toBe(400);
    expect(await balance(service, poor.api_key)).toBe(0.1);
    expect((await (await call(service, poor.api_key, '/v1/jobs')).json()).data).toEqual([]);
    const ledger = (await (await call(service, poor.api_key, '/v1/user/ledger')).json()).data;
    expect(ledger.map((e: { type: string }) => e.type)).toEqual(['grant']);
    const books = new Books(redis.url, redis.prefix);
    try {
      expect((await books.verify()).ok).toBe(true);
    } finally {
      books.close();
    }
  });
});
