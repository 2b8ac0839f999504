/**
 * fal's API under /fal, judged by the published clients, unmodified: `@fal-ai/client` through its own
 * proxyUrl option (subscribe, run, queue submit / status / result / cancel), and the AI SDK's fal
 * provider with generateImage. Plus fal's error shape, a proxy target that is not fal's refused, and one
 * account never reaching another's requests.
 */
import { createFal } from '@ai-sdk/fal';
import { createFalClient } from '@fal-ai/client';
import { generateImage } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildProcessHandle, FAST_WEBHOOKS, type Receiver, spawnWebhooks, startReceiver } from '../webhooks/support';
import { accountWith, balanceOf, bluish, redish, rgbOf, type Service, type Stack, startStack } from './support';

const RED = 'a red circle on a blue background';
const input = { prompt: RED, image_size: { width: 128, height: 128 }, num_inference_steps: 20, seed: 7, format: 'png' as const };
let stack: Stack;
let service: Service;
let key: string;
let hooks: ChildProcessHandle;
let receiver: Receiver;

beforeAll(async () => {
  stack = await startStack({ env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' }, workerEnv: { ENGINES: 'tiny-sd,tiny-sdxl' } });
  service = stack.service;
  hooks = spawnWebhooks(service);
  receiver = await startReceiver();
  key = await accountWith(service, 'fal', 100);
  await hooks.ready;
}, 60_000);
afterAll(async () => {
  await hooks?.kill('SIGTERM');
  await receiver?.close();
  await stack?.close();
});

const client = (credentials = key) => createFalClient({ credentials, proxyUrl: { url: `${service.url}/fal/proxy`, when: 'always' } });
type Output = { images: { url: string; width: number; height: number; content_type: string }[]; seed: number; has_nsfw_concepts: boolean[]; prompt: string };
const centreOf = async (url: string) => (await rgbOf(Buffer.from(await (await fetch(url)).arrayBuffer()))).at(64, 64);

describe('@fal-ai/client through its proxyUrl', () => {
  it('subscribe: queued, polled, the result with its images', async () => {
    const statuses: string[] = [];
    const result = await client().subscribe('fal-ai/stable-diffusion-v15', { input: { ...input, num_images: 2 }, pollInterval: 100, onQueueUpdate: (u) => statuses.push(u.status) });
    const data = result.data as Output;
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(statuses.at(-1)).toBe('COMPLETED');
    expect(data).toMatchObject({ seed: 7, prompt: RED, has_nsfw_concepts: [false, false] });
    expect(data.images).toHaveLength(2);
    expect(data.images[0]).toMatchObject({ width: 128, height: 128, content_type: 'image/png' });
    expect(await centreOf(data.images[0].url)).toSatisfy(redish);
  });

  it('subscribe in streaming mode: the status stream to COMPLETED, then the result', async () => {
    const statuses: string[] = [];
    const result = await client().subscribe('sdq/tiny-sd', { input, mode: 'streaming', onQueueUpdate: (u) => statuses.push(u.status) });
    expect(statuses.at(-1)).toBe('COMPLETED');
    expect(await centreOf((result.data as Output).images[0].url)).toSatisfy(redish);
  });

  it('run: answered when the images are there', async () => {
    const result = await client().run('sdq/tiny-sd', { input });
    const data = result.data as Output;
    expect(await centreOf(data.images[0].url)).toSatisfy(redish);
    expect((await rgbOf(Buffer.from(await (await fetch(data.images[0].url)).arrayBuffer()))).at(4, 4)).toSatisfy(bluish);
  });

  it('queue: submit, status, result; cancel of a long request, not charged', async () => {
    const fal = client();
    const { request_id } = await fal.queue.submit('fal-ai/fast-sdxl', { input: { prompt: RED, seed: 3, num_inference_steps: 10 } });
    await expect.poll(async () => (await fal.queue.status('fal-ai/fast-sdxl', { requestId: request_id, logs: true })).status, { timeout: 30_000 }).toBe('COMPLETED');
    const result = await fal.queue.result('fal-ai/fast-sdxl', { requestId: request_id });
    expect((result.data as Output).images).toHaveLength(1);
    const job = (await (await fetch(`${service.url}/v1/jobs/${request_id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { engine: string };
    expect(job.engine).toBe('tiny-sdxl');

    const before = await balanceOf(service, key);
    const long = await fal.queue.submit('sdq/tiny-sd', { input: { ...input, image_size: { width: 256, height: 256 }, num_inference_steps: 150 } });
    await fal.queue.cancel('sdq/tiny-sd', { requestId: long.request_id });
    await expect.poll(async () => balanceOf(service, key), { timeout: 20_000 }).toBe(before);
    await expect(fal.queue.result('sdq/tiny-sd', { requestId: long.request_id })).rejects.toThrow();
  });

  it("queue.submit with webhookUrl: fal's webhook body once the request ends", async () => {
    const { request_id } = await client().queue.submit('sdq/tiny-sd', { input, webhookUrl: receiver.url() });
    await expect.poll(() => receiver.requests.filter((r) => JSON.parse(r.body).request_id === request_id).length, { timeout: 30_000 }).toBe(1);
    const body = JSON.parse(receiver.requests.find((r) => JSON.parse(r.body).request_id === request_id)!.body) as { status: string; payload: Output };
    expect(body).toMatchObject({ status: 'OK', payload: { seed: 7, prompt: RED, has_nsfw_concepts: [false] } });
    expect(await centreOf(body.payload.images[0].url)).toSatisfy(redish);
  });

  it("errors: fal's shape; a target that is not fal's is refused; another account's request is not found; nothing held", async () => {
    const before = await balanceOf(service, key);
    await expect(client().run('nobody/nothing', { input })).rejects.toMatchObject({ status: 404 });
    await expect(client().run('sdq/tiny-sd', { input: { ...input, num_images: 50 } })).rejects.toMatchObject({ status: 400 });
    const res = await fetch(`${service.url}/fal/proxy`, { method: 'POST', headers: { authorization: `Key ${key}`, 'content-type': 'application/json', 'x-fal-target-url': 'https://evil.example/steal' }, body: '{}' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'bad_request', detail: expect.stringMatching(/not a fal run or queue URL/) });
    expect(await balanceOf(service, key)).toBe(before);
    const { request_id } = await client().queue.submit('sdq/tiny-sd', { input });
    const other = client(await accountWith(service, 'fal-other', 10));
    await expect(other.queue.status('sdq/tiny-sd', { requestId: request_id })).rejects.toMatchObject({ status: 404 });
  });
});

describe("the AI SDK's fal provider", () => {
  it('generateImage with n, size and seed', async () => {
    const fal = createFal({ apiKey: key, baseURL: `${service.url}/fal` });
    const { images } = await generateImage({ model: fal.image('fal-ai/stable-diffusion-v15'), prompt: RED, n: 2, size: '128x128', seed: 7, providerOptions: { fal: { num_inference_steps: 20 } } });
    expect(images).toHaveLength(2);
    for (const image of images) expect((await rgbOf(Buffer.from(image.uint8Array))).at(64, 64)).toSatisfy(redish);
  });
});
