/**
 * OpenAI's Images API through the official `openai` SDK, pointed at sdq with only baseURL and apiKey:
 * images follow the prompt (b64_json and url), n images, sizes mapped onto the engine's, the models list,
 * credits charged as for Stability calls, and errors in OpenAI's shape that the SDK turns into its own
 * error classes (400 naming the field, 401, 402, 404), never charged.
 */
import OpenAI from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, type Service, startService, startTestWorker, type TestWorker } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;
let client: OpenAI;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis);
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
  key = await accountWith(service, 'openai', 100);
  client = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: key, maxRetries: 0 });
});
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

async function rgb(png: Buffer) {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, at: (x: number, y: number) => [0, 1, 2].map((c) => data[(y * info.width + x) * 3 + c]) };
}
const redish = ([r, g, b]: number[]) => r > 128 && g < 110 && b < 110;
const bluish = ([r, g, b]: number[]) => b > r + 40 && b > 100;
const balance = async (apiKey = key) => ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(apiKey) })).json()) as { credits: number }).credits;
// sdq's seed extension keeps the images of these tests the same run after run
const seeded = { seed: 42 } as Record<string, unknown>;

describe('OpenAI Images through the openai SDK', () => {
  it('generates the prompt as b64_json at the engine size of 1024x1024 (its native 128x128), charged as a Stability call', async () => {
    const before = await balance();
    const out = await client.images.generate({ prompt: 'a red circle on a blue background', size: '1024x1024', response_format: 'b64_json', ...seeded } as OpenAI.ImageGenerateParams);
    expect(out.created).toBeGreaterThan(1_700_000_000);
    expect(out.data).toHaveLength(1);
    expect(out.data![0].revised_prompt).toBe('a red circle on a blue background');
    const img = await rgb(Buffer.from(out.data![0].b64_json!, 'base64'));
    expect([img.width, img.height]).toEqual([128, 128]);
    expect(img.at(64, 64), 'centre').toSatisfy(redish);
    for (const [x, y] of [[4, 4], [123, 4], [4, 123], [123, 123]]) expect(img.at(x, y), `corner ${x},${y}`).toSatisfy(bluish);
    const spent = before - (await balance());
    expect(spent).toBeGreaterThan(0);
    // the same price as the same job through Stability's route (its dry run)
    const dry = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image?dry_run=true`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json' }),
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 30 }),
    });
    expect(((await dry.json()) as { credits: number }).credits).toBeCloseTo(spent, 6);
  });

  it('answers signed URLs by default, n images, and a landscape size in the engine own shape', async () => {
    const out = await client.images.generate({ prompt: 'a red circle on a blue background', n: 2, size: '1792x1024', ...seeded } as OpenAI.ImageGenerateParams);
    expect(out.data).toHaveLength(2);
    for (const image of out.data!) {
      const res = await fetch(image.url!);
      expect(res.status).toBe(200);
      const img = await rgb(Buffer.from(await res.arrayBuffer()));
      expect(img.width).toBeGreaterThan(img.height);
    }
  });

  it('lists the image models: the OpenAI names the embedded engines answer, and the engine ids', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(expect.arrayContaining(['dall-e-2', 'tiny-sd']));
  });

  it('refuses in OpenAI shape, naming the field, and charges nothing', async () => {
    const before = await balance();
    const bad = await client.images.generate({ prompt: 'x', size: '300x300' as '256x256' }).catch((err: unknown) => err);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    const err = bad as InstanceType<typeof OpenAI.BadRequestError>;
    expect(err.status).toBe(400);
    expect(err.param).toBe('size');
    expect(err.code).toBe('invalid_height_or_width');
    expect(err.message).toMatch(/allowed: auto, 256x256/);
    const unknown = (await client.images.generate({ prompt: 'x', colour: 'red' } as OpenAI.ImageGenerateParams).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(unknown.status).toBe(400);
    expect(unknown.message).toMatch(/colour/);
    const model = (await client.images.generate({ prompt: 'x', model: 'no-such-model' }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.NotFoundError>;
    expect(model).toBeInstanceOf(OpenAI.NotFoundError);
    expect(model.param).toBe('model');
    expect(await balance()).toBe(before);

    const anonymous = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: 'sk-not-a-key', maxRetries: 0 });
    const denied = await anonymous.images.generate({ prompt: 'x' }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);

    const poor = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: await accountWith(service, 'poor', 0.0001), maxRetries: 0 });
    const broke = (await poor.images.generate({ prompt: 'x' }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(broke.status).toBe(402);
    expect(broke.code).toBe('insufficient_balance');
    expect((broke.error as { type: string }).type).toBe('insufficient_quota');
  });
});
