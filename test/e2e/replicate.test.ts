/**
 * Replicate's API under /replicate/v1, judged by the published clients, unmodified and pointed at sdq by
 * their own options: `replicate` (run, predictions.create with and without wait, wait, cancel, get, list,
 * models.get, FileOutput reading the images) and the AI SDK's Replicate provider with generateImage; and
 * the AI SDK's OpenAI provider against sdq's OpenAI dialect. Plus Replicate's error shape, one account
 * never reaching another's predictions, and bad input refused before any hold.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { createReplicate } from '@ai-sdk/replicate';
import { generateImage } from 'ai';
import Replicate, { validateWebhook } from 'replicate';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { type ChildProcessHandle, FAST_WEBHOOKS, type Receiver, spawnWebhooks, startReceiver } from '../webhooks/support';
import { accountWith, balanceOf, bluish, redish, rgbOf, type Service, startService, startTestWorker, type TestWorker } from './support';

const RED = 'a red circle on a blue background';
let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;
let replicate: Replicate;
let base: string;
let hooks: ChildProcessHandle;
let receiver: Receiver;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, { env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
  hooks = spawnWebhooks(service);
  receiver = await startReceiver();
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-sdxl' });
  await hooks.ready;
  key = await accountWith(service, 'replicate', 100);
  base = `${service.url}/replicate/v1`;
  replicate = new Replicate({ auth: key, baseUrl: base });
}, 60_000);
afterAll(async () => {
  await hooks?.kill('SIGTERM');
  await receiver?.close();
  await worker?.close(2000);
  await service?.close();
  await redis?.close();
});

const input = { prompt: RED, width: 128, height: 128, num_inference_steps: 20, seed: 7 };
const centreOf = async (png: Buffer) => (await rgbOf(png)).at(64, 64);

describe("the replicate client", () => {
  it('run: a model by Replicate name, waited for; its FileOutput objects read the images', async () => {
    const output = (await replicate.run('stability-ai/stable-diffusion', { input: { ...input, num_outputs: 2 } })) as unknown as { blob(): Promise<Blob>; url(): URL }[];
    expect(output).toHaveLength(2);
    for (const file of output) {
      const png = Buffer.from(await (await file.blob()).arrayBuffer());
      expect((await sharp(png).metadata()).format).toBe('png');
      expect(await centreOf(png)).toSatisfy(redish);
      expect((await rgbOf(png)).at(4, 4)).toSatisfy(bluish);
    }
  });

  it('predictions.create without wait, then wait: starting, then succeeded with image URLs; get and list find it', async () => {
    const created = await replicate.predictions.create({ model: 'sdq/tiny-sd', input });
    expect(created).toMatchObject({ model: 'sdq/tiny-sd', status: expect.stringMatching(/^(starting|processing)$/), input: { prompt: RED }, output: null, error: null });
    expect(created.urls.get).toBe(`${base}/predictions/${created.id}`);
    const done = await replicate.wait(created, { interval: 100 });
    expect(done.status).toBe('succeeded');
    expect(done.metrics?.predict_time).toBeGreaterThan(0);
    const urls = done.output as string[];
    expect(urls).toHaveLength(1);
    expect(await centreOf(Buffer.from(await (await fetch(urls[0])).arrayBuffer()))).toSatisfy(redish);
    expect((await replicate.predictions.get(created.id)).status).toBe('succeeded');
    const page = await replicate.predictions.list();
    expect(page.results.map((p) => p.id)).toContain(created.id);
  });

  it('image to image: a Buffer input, which the client sends as a data URI once sdq declines to keep files; its background kept', async () => {
    const circle = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"><rect width="128" height="128" fill="#1030c0"/><circle cx="64" cy="64" r="32" fill="#d02020"/></svg>');
    const image = await sharp(circle).png().toBuffer();
    // the client's default file strategy: POST /files first (501 here), then a data URI
    const [out] = (await replicate.run('sdq/tiny-sd', { input: { prompt: RED, image, prompt_strength: 0.3, num_inference_steps: 20, seed: 2 } })) as unknown as { blob(): Promise<Blob> }[];
    const png = Buffer.from(await (await out.blob()).arrayBuffer());
    expect((await rgbOf(png)).at(4, 4)).toSatisfy(bluish);
    expect(await centreOf(png)).toSatisfy(redish);
    // a prediction's output URL as the next one's image, as Replicate users chain models
    const first = await replicate.predictions.create({ model: 'sdq/tiny-sd', input, wait: 30 });
    const url = (await replicate.predictions.get(first.id)).output![0] as string;
    const chained = await replicate.predictions.create({ model: 'sdq/tiny-sd', input: { prompt: RED, image: url, prompt_strength: 0.2, num_inference_steps: 20 }, wait: 30 });
    expect(chained.status).toBe('succeeded');
    // a forged signature is refused
    const forged = await fetch(`${base}/models/sdq/tiny-sd/predictions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { prompt: RED, image: url.replace(/signature=[0-9a-f]{64}/, `signature=${'0'.repeat(64)}`) } }) });
    expect(forged.status).toBe(400);
    expect(((await forged.json()) as { detail: string }).detail).toMatch(/not validly signed/);
  });

  it('models.get gives the latest version, and a prediction by that version runs on its engine', async () => {
    const model = await replicate.models.get('stability-ai', 'sdxl');
    expect(model).toMatchObject({ owner: 'stability-ai', name: 'sdxl' });
    const version = model.latest_version!.id;
    expect(version).toMatch(/^[0-9a-f]{64}$/);
    expect((model.latest_version as { openapi_schema: { components: { schemas: { Input: { properties: object } } } } }).openapi_schema.components.schemas.Input.properties).toHaveProperty('num_inference_steps');
    const prediction = await replicate.predictions.create({ version, input: { prompt: RED, seed: 3, num_inference_steps: 10 }, wait: 30 });
    expect(prediction.status).toBe('succeeded');
    expect(prediction.model).toBe('stability-ai/sdxl');
    const job = (await (await fetch(`${service.url}/v1/jobs/${prediction.id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { engine: string };
    expect(job.engine).toBe('tiny-sdxl');
  });

  it('cancel: a long prediction is canceled (at once while queued, within a step while running); nothing is charged', async () => {
    const before = await balanceOf(service, key);
    const created = await replicate.predictions.create({ model: 'sdq/tiny-sd', input: { ...input, width: 256, height: 256, num_inference_steps: 150 } });
    const canceled = await replicate.predictions.cancel(created.id);
    expect(['canceled', 'processing']).toContain(canceled.status);
    await expect.poll(async () => (await replicate.predictions.get(created.id)).status, { timeout: 20_000 }).toBe('canceled');
    await expect.poll(async () => balanceOf(service, key), { timeout: 10_000 }).toBe(before);
  });

  it("errors are Replicate's {title, detail, status}; bad input is refused with nothing held; another account's prediction is not found", async () => {
    const before = await balanceOf(service, key);
    const bad = await fetch(`${base}/models/sdq/tiny-sd/predictions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { prompt: RED, num_outputs: 50 } }) });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ title: expect.any(String), status: 400, detail: expect.stringMatching(/num_outputs/) });
    const url = await fetch(`${base}/models/sdq/tiny-sd/predictions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { prompt: RED, image: 'https://example.com/cat.png' } }) });
    expect(((await url.json()) as { detail: string }).detail).toMatch(/data URI.*sdq does not fetch other URLs/);
    await expect(replicate.run('nobody/nothing', { input })).rejects.toThrow(/404.*model nobody\/nothing not found/s);
    expect(await balanceOf(service, key)).toBe(before);
    const mine = await replicate.predictions.create({ model: 'sdq/tiny-sd', input, wait: 30 });
    const other = new Replicate({ auth: await accountWith(service, 'replicate-other', 10), baseUrl: base });
    await expect(other.predictions.get(mine.id)).rejects.toThrow(/404/);
    await expect(other.predictions.cancel(mine.id)).rejects.toThrow(/404/);
    expect((await other.predictions.list()).results).toEqual([]);
  });
});

describe("Replicate's webhooks", () => {
  it('start and completed, the prediction object as the body, signed so that the client\'s validateWebhook accepts it', async () => {
    const prediction = await replicate.predictions.create({ model: 'sdq/tiny-sd', input, webhook: receiver.url(), webhook_events_filter: ['start', 'completed'] });
    await expect.poll(() => receiver.requests.filter((r) => JSON.parse(r.body).id === prediction.id).length, { timeout: 30_000 }).toBe(2);
    const received = receiver.requests.filter((r) => JSON.parse(r.body).id === prediction.id);
    const bodies = received.map((r) => JSON.parse(r.body) as { status: string; output: string[] | null; model: string; input: { prompt: string } });
    expect(bodies.map((b) => b.status)).toEqual(['processing', 'succeeded']);
    expect(bodies[1]).toMatchObject({ model: 'sdq/tiny-sd', input: { prompt: RED }, output: [expect.stringMatching(/^http/)] });
    const { key: secret } = (await replicate.webhooks.default.secret.get()) as { key: string };
    for (const r of received) expect(await validateWebhook({ headers: r.headers as Record<string, string>, body: r.body } as never, secret)).toBe(true);
  });
});

describe('the AI SDK', () => {
  it("Replicate provider: generateImage with n, size and seed", async () => {
    const provider = createReplicate({ apiToken: key, baseURL: base });
    const { images } = await generateImage({ model: provider.image('stability-ai/stable-diffusion'), prompt: RED, n: 2, size: '128x128', seed: 5, providerOptions: { replicate: { num_inference_steps: 20 } } });
    expect(images).toHaveLength(2);
    for (const image of images) expect(await centreOf(Buffer.from(image.uint8Array))).toSatisfy(redish);
  });

  it("OpenAI provider against sdq's OpenAI dialect: generateImage with n, size and providerOptions; seed said unsupported, as for OpenAI", async () => {
    // the provider sends no seed (OpenAI has none), so the pictures are random draws: checked by what
    // every draw has, not by where the circle lands
    const openai = createOpenAI({ baseURL: `${service.url}/v1`, apiKey: key });
    const { images, warnings, responses } = await generateImage({ model: openai.image('dall-e-2'), prompt: RED, n: 2, size: '1024x1024', seed: 3, providerOptions: { openai: { quality: 'low' } } });
    expect(warnings).toEqual([expect.objectContaining({ feature: 'seed' })]);
    expect(images).toHaveLength(2);
    const pngs = images.map((i) => Buffer.from(i.uint8Array));
    for (const png of pngs) expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 128, height: 128 });
    expect(pngs[0].equals(pngs[1])).toBe(false);
    // quality low: 15 steps, as the dialect maps it
    const jobId = responses[0].headers?.['x-job-id'];
    const job = (await (await fetch(`${service.url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { params: { steps: number } };
    expect(job.params.steps).toBe(15);
  });
});
