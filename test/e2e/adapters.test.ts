/**
 * LoRAs and embeddings through every dialect, the whole service (API, Redis, a worker, tiny-sd): the
 * fixture LoRA draws tiny-sd's red circle green, asked for by sdq's `loras` field (v1 JSON, v2beta
 * multipart) and by A1111's `<lora:name:weight>` tag in each dialect's prompt (Stability's own SDK, the
 * OpenAI SDK, A1111's JSON); the fixture embedding makes `crimson` mean red. Jobs with different sets at
 * once each get their own picture; what is wrong with an adapter is a 400 with nothing held.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AxiosStatic } from 'axios';
import OpenAI from 'openai';
import StabilityAI from 'stability-ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f32File } from '../../packages/pipeline/test/safetensors-file';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, rgbOf, type Service, startService, startTestWorker, type TestWorker } from './support';

const ADAPTERS = join(import.meta.dirname, '../../packages/pipeline/test/fixtures/adapters');
const RED = 'a large red circle in the center on a blue background';
const CRIMSON = 'a large crimson circle in the center on a blue background';
const axios = createRequire(import.meta.url)('axios') as AxiosStatic;

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;
let loraDir: string;
let embeddingsDir: string;
let pricesDir: string;
let interceptor: number;

beforeAll(async () => {
  loraDir = mkdtempSync(join(tmpdir(), 'sdq-e2e-loras-'));
  embeddingsDir = mkdtempSync(join(tmpdir(), 'sdq-e2e-embeddings-'));
  pricesDir = mkdtempSync(join(tmpdir(), 'sdq-e2e-prices-'));
  copyFileSync(join(ADAPTERS, 'green-objects.safetensors'), join(loraDir, 'green-objects.safetensors'));
  copyFileSync(join(ADAPTERS, 'crimson.safetensors'), join(embeddingsDir, 'crimson.safetensors'));
  // what a folder of downloads holds besides: pickle, a cut download, a hostile header, another family's LoRA
  writeFileSync(join(loraDir, 'evil.ckpt'), Buffer.from('\x80\x04\x95 pickle that would run code'));
  writeFileSync(join(loraDir, 'cut.safetensors'), Buffer.from(new Uint8Array(readFileSync(join(ADAPTERS, 'green-objects.safetensors')).subarray(0, 300))));
  const hostile = Buffer.alloc(64);
  hostile.writeBigUInt64LE(2n ** 40n, 0);
  writeFileSync(join(loraDir, 'hostile.safetensors'), hostile);
  writeFileSync(join(loraDir, 'other-family.safetensors'), f32File({ 'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': [4, 320], 'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': [320, 4] }));
  writeFileSync(join(pricesDir, 'prices.json'), JSON.stringify({ engines: { 'tiny-sd': { lora: 0.05 } } }));
  redis = await startTestRedis();
  service = await startService(redis, { env: { LORA_DIR: loraDir, EMBEDDINGS_DIR: embeddingsDir, PRICES_FILE: join(pricesDir, 'prices.json'), ENGINE_ALIASES: 'stable-diffusion-v1-6=tiny-sd' } });
  // batches of up to 4: jobs without adapters batch together, a LoRA set runs on its own pipeline
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-sdxl', WORKER_BATCH_SIZE: '4' });
  key = await accountWith(service, 'adapters', 100);
  interceptor = axios.interceptors.request.use((config) => ({ ...config, url: config.url?.replace('https://api.stability.ai', service.url) }));
}, 90_000);
afterAll(async () => {
  axios.interceptors.request.eject(interceptor);
  await worker?.close(2000);
  await service?.close();
  await redis?.close();
  for (const dir of [loraDir, embeddingsDir, pricesDir]) rmSync(dir, { recursive: true, force: true });
});

const auth = () => ({ authorization: `Bearer ${key}` });
const isGreen = ([r, g, b]: number[]) => g > 90 && g > r + 25 && g > b + 25;
const isRed = ([r, g, b]: number[]) => r > 128 && g < 90 && b < 90;
const centre = async (png: Buffer) => (await rgbOf(png)).at(64, 64);

const v1 = async (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', ...headers }, body: JSON.stringify({ steps: 20, seed: 3, ...body }) });
const v1Png = async (body: Record<string, unknown>) => {
  const res = await v1(body);
  expect(res.status, await res.clone().text()).toBe(200);
  return Buffer.from(((await res.json()) as { artifacts: { base64: string }[] }).artifacts[0].base64, 'base64');
};
const balance = async () => ((await (await fetch(`${service.url}/v1/user/balance`, { headers: auth() })).json()) as { credits: number }).credits;

describe('the adapter folders, listed', () => {
  it('GET /v1/loras names each LoRA with the engines it fits, and the files not taken with why', async () => {
    const res = await fetch(`${service.url}/v1/loras`, { headers: auth() });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { loras: { name: string; engines: string[]; modules: number; components: Record<string, number> }[]; skipped: { file: string; reason: string }[] };
    const green = body.loras.find((l) => l.name === 'green-objects')!;
    expect(green.engines).toEqual(['tiny-sd']);
    expect(green.modules).toBe(88);
    expect(green.components.unet).toBeGreaterThan(0);
    expect(green.components.text_encoder).toBeGreaterThan(0);
    expect(body.loras.find((l) => l.name === 'other-family')!.engines).toEqual([]);
    const skipped = new Map(body.skipped.map((s) => [s.file, s.reason]));
    expect(skipped.get('evil.ckpt')).toMatch(/pickle/);
    expect(skipped.get('cut.safetensors')).toBeDefined();
    expect(skipped.get('hostile.safetensors')).toMatch(/header/);
  });

  it('GET /v1/embeddings and A1111\'s embeddings, loras and refresh-loras', async () => {
    const list = (await (await fetch(`${service.url}/v1/embeddings`, { headers: auth() })).json()) as { embeddings: { name: string; engines: string[]; width: number }[] };
    expect(list.embeddings).toEqual([expect.objectContaining({ name: 'crimson', engines: ['tiny-sd'], width: 128 })]);
    const a1111 = (await (await fetch(`${service.url}/sdapi/v1/embeddings`, { headers: auth() })).json()) as { loaded: Record<string, { shape: number; vectors: number }>; skipped: object };
    expect(Object.keys(a1111.loaded)).toEqual(['crimson']);
    expect(a1111.loaded.crimson.shape).toBe(128);
    const loras = (await (await fetch(`${service.url}/sdapi/v1/loras`, { headers: auth() })).json()) as { name: string; alias: string; path: string; metadata: object }[];
    expect(loras.map((l) => l.name).sort()).toEqual(['green-objects', 'other-family']);
    expect(loras.find((l) => l.name === 'green-objects')).toMatchObject({ path: 'green-objects.safetensors' });
    // a file copied in is there after refresh-loras (and, without it, within a second)
    copyFileSync(join(ADAPTERS, 'green-objects-peft.safetensors'), join(loraDir, 'green-peft.safetensors'));
    expect((await fetch(`${service.url}/sdapi/v1/refresh-loras`, { method: 'POST', headers: auth() })).status).toBe(200);
    const after = (await (await fetch(`${service.url}/sdapi/v1/loras`, { headers: auth() })).json()) as { name: string }[];
    expect(after.map((l) => l.name)).toContain('green-peft');
  });
});

describe('a LoRA asked for in each dialect', () => {
  it('v1: the loras field and a prompt tag draw green; no LoRA red; weight 0.5 a third picture; the PEFT form as the kohya one', async () => {
    const red = await v1Png({ text_prompts: [{ text: RED }] });
    expect(await centre(red)).toSatisfy(isRed);
    const field = await v1Png({ text_prompts: [{ text: RED }], loras: [{ name: 'green-objects', weight: 1 }] });
    expect(await centre(field)).toSatisfy(isGreen);
    const tag = await v1Png({ text_prompts: [{ text: `${RED} <lora:green-objects:1>` }] });
    expect((await rgbOf(tag)).at(64, 64)).toEqual((await rgbOf(field)).at(64, 64));
    const half = await v1Png({ text_prompts: [{ text: `<lora:green-objects:0.5> ${RED}` }] });
    const [h, f, r] = await Promise.all([half, field, red].map(async (png) => (await rgbOf(png)).at(64, 64)));
    expect(h).not.toEqual(f);
    expect(h).not.toEqual(r);
    // the same LoRA twice: the weights add (0.5 + 0.5 is 1)
    const twice = await v1Png({ text_prompts: [{ text: `${RED} <lora:green-objects:0.5>` }], loras: [{ name: 'green-objects', weight: 0.5 }] });
    expect((await rgbOf(twice)).at(64, 64)).toEqual(f);
    const peft = await v1Png({ text_prompts: [{ text: RED }], loras: [{ name: 'green-peft' }] });
    expect(await centre(peft)).toSatisfy(isGreen);
  });

  it("v1 through Stability's own SDK, the tag in its text prompt", async () => {
    const sdk = new StabilityAI(key);
    const dir = mkdtempSync(join(tmpdir(), 'sdq-e2e-sdk-lora-'));
    try {
      const process = (globalThis as { process: NodeJS.Process }).process;
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        const [out] = await sdk.v1.generation.textToImage('stable-diffusion-v1-6', [{ text: `${RED} <lora:green-objects:1>`, weight: 1 }], { steps: 20, seed: 3, width: 128, height: 128 } as never);
        expect(await centre(readFileSync(out.filepath))).toSatisfy(isGreen);
      } finally {
        process.chdir(cwd);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('v2beta multipart: loras as a JSON field and as loras[0][name]', async () => {
    for (const fields of [{ loras: JSON.stringify([{ name: 'green-objects', weight: 1 }]) }, { 'loras[0][name]': 'green-objects', 'loras[0][weight]': '1' }]) {
      const form = new FormData();
      form.set('prompt', RED);
      form.set('seed', '3');
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      const res = await fetch(`${service.url}/v2beta/stable-image/generate/core`, { method: 'POST', headers: { ...auth(), accept: 'image/*' }, body: form });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(await centre(Buffer.from(await res.arrayBuffer()))).toSatisfy(isGreen);
    }
  });

  it('OpenAI SDK: the tag in the prompt', async () => {
    const client = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: key, maxRetries: 0 });
    const out = await client.images.generate({ model: 'tiny-sd', prompt: `${RED} <lora:green-objects:1>`, response_format: 'b64_json', seed: 3, size: '1024x1024' } as OpenAI.ImageGenerateParams);
    const png = Buffer.from(out.data![0].b64_json!, 'base64');
    const { width } = await rgbOf(png);
    expect(await (await rgbOf(png)).at(width / 2, width / 2)).toSatisfy(isGreen);
  });

  it('A1111: the tag in prompt, and an embedding word in prompt; the job params record what was applied', async () => {
    const txt2img = async (prompt: string) => {
      const res = await fetch(`${service.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ prompt, steps: 20, seed: 3, width: 128, height: 128, override_settings: { sd_model_checkpoint: 'tiny-sd' } }) });
      expect(res.status, await res.clone().text()).toBe(200);
      const body = (await res.json()) as { images: string[]; info: string };
      return { png: Buffer.from(body.images[0], 'base64'), job: (JSON.parse(body.info) as { job_id: string }).job_id };
    };
    const green = await txt2img(`${RED} <lora:green-objects:1>`);
    expect(await centre(green.png)).toSatisfy(isGreen);
    const job = (await (await fetch(`${service.url}/v1/jobs/${green.job}`, { headers: auth() })).json()) as { params: { loras: unknown[]; text_prompts: { text: string }[] } };
    expect(job.params.loras).toEqual([{ name: 'green-objects', weight: 1, modules: 88, matched: 88 }]);
    expect(job.params.text_prompts[0].text).toBe(RED);
    const crimson = await txt2img(CRIMSON);
    expect(await centre(crimson.png)).toSatisfy(isRed);
    const cj = (await (await fetch(`${service.url}/v1/jobs/${crimson.job}`, { headers: auth() })).json()) as { params: { embeddings: string[] } };
    expect(cj.params.embeddings).toEqual(['crimson']);
  });

  it('the embedding in v1 too; removed from the folder, crimson no longer draws red', async () => {
    expect(await centre(await v1Png({ text_prompts: [{ text: CRIMSON }] }))).toSatisfy(isRed);
    rmSync(join(embeddingsDir, 'crimson.safetensors'));
    await new Promise((r) => setTimeout(r, 1100));
    expect(await centre(await v1Png({ text_prompts: [{ text: CRIMSON }] }))).not.toSatisfy(isRed);
    copyFileSync(join(ADAPTERS, 'crimson-diffusers.safetensors'), join(embeddingsDir, 'crimson.safetensors'));
    await new Promise((r) => setTimeout(r, 1100));
    expect(await centre(await v1Png({ text_prompts: [{ text: CRIMSON }] }))).toSatisfy(isRed);
  });
});

describe('sets at once, prices, refusals', () => {
  it('jobs with different sets and one without, at once: each its own picture, as when run alone', async () => {
    const bodies = [
      { text_prompts: [{ text: RED }], loras: [{ name: 'green-objects', weight: 1 }] },
      { text_prompts: [{ text: RED }], loras: [{ name: 'green-objects', weight: 0.5 }] },
      { text_prompts: [{ text: RED }] },
      { text_prompts: [{ text: RED }], seed: 4 },
    ];
    const alone = [];
    for (const body of bodies) alone.push((await rgbOf(await v1Png(body))).at(64, 64));
    const together = await Promise.all(bodies.map(async (body) => (await rgbOf(await v1Png(body))).at(64, 64)));
    expect(together).toEqual(alone);
    expect(together[0]).toSatisfy(isGreen);
    expect(together[2]).toSatisfy(isRed);
  });

  it('a dry run prices each LoRA (PRICES_FILE lora: 0.05 per image) and charges nothing', async () => {
    const dry = async (text: string) =>
      ((await (await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image?dry_run=true`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ text_prompts: [{ text }], samples: 2 }) })).json()) as { credits: number }).credits;
    const before = await balance();
    const plain = await dry(RED);
    const withLora = await dry(`${RED} <lora:green-objects>`);
    expect(withLora).toBeCloseTo(plain + 2 * 0.05, 6);
    expect(await balance()).toBe(before);
  });

  it('refuses, with invalid_lora and nothing held: an unknown name, a pickle file, a cut file, another family, a bad tag, a weight out of range', async () => {
    const before = await balance();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ loras: [{ name: 'no-such-lora' }] }, /no-such-lora is not a LoRA here \(LoRAs: .*green-objects/],
      [{ loras: [{ name: 'evil' }] }, /evil.*pickle/],
      [{ loras: [{ name: 'cut' }] }, /cut is not a LoRA here/],
      [{ loras: [{ name: 'other-family' }] }, /other-family matches none of tiny-sd's layers \(0 of its 1 modules\)/],
      [{ text_prompts: [{ text: `${RED} <lora:green-objects:lots>` }] }, /the weight must be a number/],
      [{ text_prompts: [{ text: `${RED} <hypernet:thing:1>` }] }, /not hypernetworks/],
      [{ loras: [{ name: 'green-objects', weight: 5 }] }, /loras/],
    ];
    for (const [body, message] of cases) {
      const res = await v1({ text_prompts: [{ text: RED }], ...body });
      const error = (await res.json()) as { name: string; message: string };
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(error.name).toBe('invalid_lora');
      expect(error.message).toMatch(message);
    }
    // a LoRA for SD 1.x on SDXL: its layers are not there
    const sdxl = await fetch(`${service.url}/v1/generation/tiny-sdxl/text-to-image`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ text_prompts: [{ text: RED }], loras: [{ name: 'green-objects' }] }) });
    expect(sdxl.status).toBe(400);
    expect(((await sdxl.json()) as { message: string }).message).toMatch(/green-objects matches none of tiny-sdxl's layers \(0 of its 88 modules\)/);
    expect(await balance()).toBe(before);
    expect(worker.jobs.length).toBeGreaterThan(0);
  });
});
