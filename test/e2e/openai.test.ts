/**
 * OpenAI's Images API through the official `openai` SDK, pointed at sdq with only baseURL and apiKey:
 * images follow the prompt (b64_json and url), n images, sizes mapped onto the engine's, the models list,
 * credits charged as for Stability calls, and errors in OpenAI's shape that the SDK turns into its own
 * error classes (400 naming the field, 401, 402, 404), never charged.
 */
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountWith, authed, balanceOf, bluish, redish, rgbOf, type Service, type Stack, startStack } from './support';

let stack: Stack;
let service: Service;
let key: string;
let client: OpenAI;

beforeAll(async () => {
  // gpt-image-1 on the engine this suite's worker serves, as an operator maps it
  stack = await startStack({ env: { OPENAI_MODELS: 'gpt-image-1=tiny-sd' }, workerEnv: { ENGINES: 'tiny-sd' } });
  service = stack.service;
  key = await accountWith(service, 'openai', 100);
  client = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: key, maxRetries: 0 });
});
afterAll(() => stack?.close());

const balance = (apiKey = key) => balanceOf(service, apiKey);
// sdq's seed extension keeps the images of these tests the same run after run
const seeded = { seed: 42 } as Record<string, unknown>;

describe('OpenAI Images through the openai SDK', () => {
  it('generates the prompt as b64_json at the engine size of 1024x1024 (its native 128x128), charged as a Stability call', async () => {
    const before = await balance();
    const out = await client.images.generate({ prompt: 'a red circle on a blue background', size: '1024x1024', response_format: 'b64_json', ...seeded } as OpenAI.ImageGenerateParams);
    expect(out.created).toBeGreaterThan(1_700_000_000);
    expect(out.data).toHaveLength(1);
    expect(out.data![0].revised_prompt).toBe('a red circle on a blue background');
    const img = await rgbOf(Buffer.from(out.data![0].b64_json!, 'base64'));
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

  it('edits where the mask is transparent, keeping every pixel outside it, and refuses an image without alpha and no mask', async () => {
    const base = await client.images.generate({ prompt: 'a red circle on a blue background', response_format: 'b64_json', ...seeded } as OpenAI.ImageGenerateParams);
    const original = Buffer.from(base.data![0].b64_json!, 'base64');
    // transparent (to edit) in the middle 64x64, opaque elsewhere
    const { data: rgba } = await sharp(original).removeAlpha().ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    for (let y = 32; y < 96; y++) for (let x = 32; x < 96; x++) rgba[(y * 128 + x) * 4 + 3] = 0;
    const mask = await sharp(rgba, { raw: { width: 128, height: 128, channels: 4 } }).png().toBuffer();
    const before = await balance();
    const out = await client.images.edit({ image: await toFile(original, 'image.png', { type: 'image/png' }), mask: await toFile(mask, 'mask.png', { type: 'image/png' }), prompt: 'a yellow square on a blue background', n: 1, response_format: 'b64_json', ...seeded } as OpenAI.ImageEditParams);
    expect(out.data).toHaveLength(1);
    const [edited, kept] = [await rgbOf(Buffer.from(out.data![0].b64_json!, 'base64')), await rgbOf(original)];
    expect([edited.width, edited.height]).toEqual([128, 128]);
    for (const [x, y] of [[4, 4], [123, 4], [4, 123], [123, 123], [16, 64]]) expect(edited.at(x, y), `outside the mask at ${x},${y}`).toEqual(kept.at(x, y));
    expect(before - (await balance())).toBeGreaterThan(0);

    const opaque = await sharp(original).removeAlpha().png().toBuffer();
    const refused = (await client.images.edit({ image: await toFile(opaque, 'image.png', { type: 'image/png' }), prompt: 'x' }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect(refused.param).toBe('image');
    expect(refused.code).toBe('invalid_mask_image');
  });

  it('makes variations of an image alone: n of them, each keeping its red circle on blue', async () => {
    const base = await client.images.generate({ prompt: 'a red circle on a blue background', response_format: 'b64_json', ...seeded } as OpenAI.ImageGenerateParams);
    const out = await client.images.createVariation({ image: await toFile(Buffer.from(base.data![0].b64_json!, 'base64'), 'image.png', { type: 'image/png' }), n: 2, response_format: 'b64_json', ...seeded } as OpenAI.ImageCreateVariationParams);
    expect(out.data).toHaveLength(2);
    const [a, b] = [Buffer.from(out.data![0].b64_json!, 'base64'), Buffer.from(out.data![1].b64_json!, 'base64')];
    expect(a.equals(b)).toBe(false);
    for (const png of [a, b]) {
      const img = await rgbOf(png);
      expect(img.at(64, 64), 'centre').toSatisfy(redish);
      expect(img.at(4, 4), 'corner').toSatisfy(bluish);
    }
  });

  it('answers signed URLs by default, n images, and a landscape size in the engine own shape', async () => {
    const out = await client.images.generate({ prompt: 'a red circle on a blue background', n: 2, size: '1792x1024', ...seeded } as OpenAI.ImageGenerateParams);
    expect(out.data).toHaveLength(2);
    for (const image of out.data!) {
      const res = await fetch(image.url!);
      expect(res.status).toBe(200);
      const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
      expect(img.width).toBeGreaterThan(img.height);
    }
  });

  it('takes one of OpenAI\'s sizes as it is when the engine takes it (256x256 on tiny-sd), and maps it only otherwise', async () => {
    const out = await client.images.generate({ prompt: 'a red circle on a blue background', size: '256x256', response_format: 'b64_json', ...seeded } as OpenAI.ImageGenerateParams);
    const img = await rgbOf(Buffer.from(out.data![0].b64_json!, 'base64'));
    expect([img.width, img.height]).toEqual([256, 256]);
  });

  it("gpt-image-1's fields: b64_json unasked, output_format jpeg, its response fields, image[] for edits; transparent refused", async () => {
    const out = await client.images.generate({ model: 'gpt-image-1', prompt: 'a red circle on a blue background', output_format: 'jpeg', quality: 'low', moderation: 'low', ...seeded } as OpenAI.ImageGenerateParams);
    expect(out).toMatchObject({ output_format: 'jpeg', size: '128x128', quality: 'low', background: 'opaque' });
    const jpeg = Buffer.from(out.data![0].b64_json!, 'base64');
    expect(out.data![0].url).toBeUndefined();
    expect((await sharp(jpeg).metadata()).format).toBe('jpeg');
    expect((await rgbOf(jpeg)).at(64, 64), 'centre').toSatisfy(redish);

    // the SDK sends an array as image[]: one image is the image edited
    const { data: rgba } = await sharp(jpeg).removeAlpha().ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    for (let y = 32; y < 96; y++) for (let x = 32; x < 96; x++) rgba[(y * 128 + x) * 4 + 3] = 0;
    const holed = await sharp(rgba, { raw: { width: 128, height: 128, channels: 4 } }).png().toBuffer();
    const edited = await client.images.edit({ model: 'gpt-image-1', image: [await toFile(holed, 'a.png', { type: 'image/png' })], prompt: 'a yellow square on a blue background', ...seeded } as OpenAI.ImageEditParams);
    const kept = await rgbOf(holed);
    expect((await rgbOf(Buffer.from(edited.data![0].b64_json!, 'base64'))).at(4, 4), 'outside the hole').toEqual(kept.at(4, 4));
    const before = await balance();
    const two = (await client.images.edit({ model: 'gpt-image-1', image: [await toFile(holed, 'a.png', { type: 'image/png' }), await toFile(holed, 'b.png', { type: 'image/png' })], prompt: 'x' } as OpenAI.ImageEditParams).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(two).toBeInstanceOf(OpenAI.BadRequestError);
    expect(two.param).toBe('image');
    const clear = (await client.images.generate({ model: 'gpt-image-1', prompt: 'x', background: 'transparent' } as OpenAI.ImageGenerateParams).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(clear).toBeInstanceOf(OpenAI.BadRequestError);
    expect(clear.param).toBe('background');
    expect(await balance()).toBe(before);
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
