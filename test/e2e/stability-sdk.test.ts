/**
 * Stability's published Node SDK (`stability-ai` on npm, written by nobody here) against sdq: its v1 and
 * v2beta methods, exactly as it sends them. The SDK has Stability's address built in, so the test points
 * the axios instance it uses at sdq, as an operator points it with DNS or a proxy; nothing else changes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AxiosStatic } from 'axios';
import sharp from 'sharp';
import StabilityAI from 'stability-ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, type Service, startService, startTestWorker, type TestWorker } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let sdk: InstanceType<typeof StabilityAI>;
let dir: string;
let interceptor: number;
let redPng: string;

// The SDK requires axios as CommonJS: its instance is the one to point at sdq (an ESM import is another).
const axios = createRequire(import.meta.url)('axios') as AxiosStatic;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, { env: { ENGINE_ALIASES: 'stable-diffusion-v1-6=tiny-sd' } });
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-sd3,tiny-upscaler-x2' });
  interceptor = axios.interceptors.request.use((config) => ({ ...config, url: config.url?.replace('https://api.stability.ai', service.url) }));
  sdk = new StabilityAI(await accountWith(service, 'sdk', 1000));
  dir = mkdtempSync(join(tmpdir(), 'sdq-sdk-'));
  redPng = join(dir, 'red.png');
  const circle = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"><rect width="128" height="128" fill="#1030c0"/><circle cx="64" cy="64" r="32" fill="#d02020"/></svg>');
  writeFileSync(redPng, await sharp(circle).png().toBuffer());
}, 60_000);
afterAll(async () => {
  axios.interceptors.request.eject(interceptor);
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const pixelAt = async (file: string, x: number, y: number) => {
  const { data, info } = await sharp(readFileSync(file)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * 3;
  return { rgb: [data[i], data[i + 1], data[i + 2]], width: info.width, height: info.height };
};

describe('the stability-ai SDK', () => {
  it('v1: account, balance, engines and text-to-image through a Stability engine id', async () => {
    const account = await sdk.v1.user.account();
    expect(typeof account.email).toBe('string');
    expect((await sdk.v1.user.balance()).credits).toBe(1000);
    expect((await sdk.v1.engines.list()).map((e: { id: string }) => e.id)).toContain('stable-diffusion-v1-6');
    const [image] = await sdk.v1.generation.textToImage('stable-diffusion-v1-6', [{ text: 'a red circle on a blue background', weight: 1 }], { steps: 20, seed: 42 });
    const { rgb } = await pixelAt(image.filepath, 64, 64);
    expect(rgb[0], `centre ${rgb}`).toBeGreaterThan(128);
  });

  it('v2beta generate.core and generate.sd3 answer with images the SDK saves', async () => {
    const core = await sdk.v2beta.stableImage.generate.core('a red circle on a blue background', { seed: 42, aspectRatio: '1:1' });
    expect(core.seed).toBe(42);
    const centre = await pixelAt(core.filepath, 64, 64);
    expect([centre.width, centre.height]).toEqual([128, 128]);
    expect(centre.rgb[0], `centre ${centre.rgb}`).toBeGreaterThan(128);
    const corner = await pixelAt(core.filepath, 4, 4);
    expect(corner.rgb[2], `corner ${corner.rgb}`).toBeGreaterThan(corner.rgb[0] + 40);
    // the SDK's older model names, served by the SD 3.5 model Stability reroutes each to (tiny-sd3 here)
    for (const model of ['sd3', 'sd3-turbo'] as const) {
      const sd3 = await sdk.v2beta.stableImage.generate.sd3('a red circle on a blue background', { model, mode: 'text-to-image', seed: 8 });
      expect(sd3.seed, model).toBe(8);
      expect((await pixelAt(sd3.filepath, 64, 64)).rgb[0], model).toBeGreaterThan(128);
    }
  });

  it('v2beta edit.inpaint, edit.outpaint and edit.erase with files from disk', async () => {
    const mask = join(dir, 'mask.png');
    writeFileSync(mask, await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000000' } }).composite([{ input: await sharp({ create: { width: 32, height: 32, channels: 3, background: '#ffffff' } }).png().toBuffer(), left: 0, top: 0 }]).png().toBuffer());
    const inpainted = await sdk.v2beta.stableImage.edit.inpaint(redPng, 'a blue background', { mask, seed: 3 });
    expect((await pixelAt(inpainted.filepath, 64, 64)).rgb[0]).toBeGreaterThan(128);
    const outpainted = await sdk.v2beta.stableImage.edit.outpaint(redPng, { right: 64, prompt: 'a blue background', seed: 4 });
    expect((await pixelAt(outpainted.filepath, 0, 0)).width).toBe(192);
    const erased = await sdk.v2beta.stableImage.edit.erase(redPng, { mask, seed: 5 });
    expect((await pixelAt(erased.filepath, 64, 64)).rgb[0]).toBeGreaterThan(128);
  });

  it('v2beta upscale.startCreative then fetchCreativeResult until it is done; results.fetchAsyncGenerationResult too', async () => {
    const { id } = await sdk.v2beta.stableImage.upscale.startCreative(redPng, 'a red circle on a blue background', { seed: 6 });
    let result: { filepath?: string; status?: string } = { status: 'in-progress' };
    for (let i = 0; i < 600 && result.status === 'in-progress'; i++) {
      result = await sdk.v2beta.stableImage.upscale.fetchCreativeResult(id, 'png');
      if (result.status === 'in-progress') await new Promise((r) => setTimeout(r, 50));
    }
    const upscaled = await pixelAt(result.filepath!, 128, 128);
    expect([upscaled.width, upscaled.height]).toEqual([256, 256]);
    expect(upscaled.rgb[0], `centre ${upscaled.rgb}`).toBeGreaterThan(128);
    const again = (await sdk.v2beta.stableImage.results.fetchAsyncGenerationResult(id)) as { filepath: string; seed: number };
    expect(again.seed).toBe(6);
  });

  it('an endpoint sdq does not serve fails in the SDK with Stability\'s error body naming it', async () => {
    await expect(sdk.v2beta.stableImage.edit.removeBackground(redPng)).rejects.toThrow(/"name":"not_implemented","errors":\["\/v2beta\/stable-image\/edit\/remove-background is not supported/);
  });
});
