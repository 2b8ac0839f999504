/**
 * Input that once got past the API (which read only image headers) and failed in the worker after its
 * retries: each is now a 400 at submission, with no hold, no job and nothing stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { corrupt, expectError, form, jpeg, png, pngClaiming, truncated } from './support';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };
let alice: { id: string; api_key: string };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
  alice = await api.account('alice');
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

const call = (path: string, init: RequestInit = {}) =>
  fetch(api.url + path, { ...init, headers: { authorization: `Bearer ${alice.api_key}`, prefer: 'respond-async', ...(init.headers as Record<string, string>) } });
const I2I = '/v1/generation/gen-a/image-to-image';
const MASKING = '/v1/generation/gen-a/image-to-image/masking';
const UPSCALE = '/v1/generation/up-x2/image-to-image/upscale';
const prompt = { 'text_prompts[0][text]': 'a red circle' };

/** Nothing was held, queued, charged or stored for alice. */
async function expectNothingLeft() {
  expect(await (await call('/v1/user/balance')).json()).toEqual({ credits: 10 });
  const ledger = (await (await call('/v1/user/ledger')).json()) as { data: { type: string }[] };
  expect(ledger.data.map((e) => e.type)).toEqual(['grant']);
  expect(((await (await call('/v1/jobs')).json()) as { data: unknown[] }).data).toEqual([]);
  const storage = api.server.deps.storage as unknown as { inner: { list(prefix: string): Promise<string[]> } };
  expect(await storage.inner.list('inputs/')).toEqual([]);
}

describe('uploaded images are decoded in full before anything is held', () => {
  it('refuses truncated and corrupt init images, masks and upscale inputs, naming the field', async () => {
    const goodPng = await png(128, 128, { noise: true });
    const goodJpeg = await jpeg(128, 128);
    const cases: [string, string, Record<string, string>, Record<string, Buffer>, number, string, RegExp][] = [
      ['truncated PNG init', I2I, prompt, { init_image: truncated(goodPng) }, 400, 'invalid_init_image', /init_image: the image data is truncated or corrupt/],
      ['corrupt PNG init', I2I, prompt, { init_image: corrupt(goodPng) }, 400, 'invalid_init_image', /init_image/],
      ['truncated JPEG init', I2I, prompt, { init_image: truncated(goodJpeg) }, 400, 'invalid_init_image', /init_image/],
      ['JPEG with a broken header', I2I, prompt, { init_image: corrupt(goodJpeg, 20) }, 400, 'invalid_init_image', /header cannot be read/],
      ['text sent as an image', I2I, prompt, { init_image: Buffer.from('hello, not an image') }, 400, 'invalid_mime_type', /not a PNG, JPEG or WebP/],
      ['an SVG', I2I, prompt, { init_image: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"/>') }, 400, 'invalid_mime_type', /not a PNG/],
      [
        'truncated mask',
        MASKING,
        { ...prompt, mask_source: 'MASK_IMAGE_WHITE' },
        { init_image: goodPng, mask_image: truncated(goodPng) },
        400,
        'invalid_mask_image',
        /mask_image: the image data is truncated or corrupt/,
      ],
      ['truncated upscale input', UPSCALE, {}, { image: truncated(goodPng) }, 400, 'invalid_init_image', /image: the image data/],
      // A 2 KB file whose header claims 16383x16383: refused on the header, never decoded, whatever width and height say.
      ['a decompression bomb header, width and height given', I2I, { ...prompt, width: '128', height: '128' }, { init_image: pngClaiming(16383, 16383) }, 400, 'invalid_image_dimensions', /16383x16383 = 268402689 pixels is over the maximum/],
      ['a bomb header as the mask', MASKING, { ...prompt, mask_source: 'MASK_IMAGE_WHITE', width: '128', height: '128' }, { init_image: goodPng, mask_image: pngClaiming(16383, 16383) }, 400, 'invalid_image_dimensions', /mask_image/],
      ['a bomb header to upscale', UPSCALE, { width: '256' }, { image: pngClaiming(16383, 16383) }, 400, 'invalid_image_dimensions', /image: 16383x16383/],
      ['a header that lies about its size', I2I, { ...prompt, width: '128', height: '128' }, { init_image: pngClaiming(512, 512) }, 400, 'invalid_init_image', /truncated or corrupt/],
    ];
    for (const [name, path, fields, files, status, errorName, message] of cases) {
      const body = await expectError(await call(path, { method: 'POST', body: form(fields, files) }), status, errorName);
      expect(body.message, name).toMatch(message);
    }
    await expectNothingLeft();
  });

  it('refuses prompts whose weights are all 0 or below, in JSON and multipart', async () => {
    const weights = [[-1], [0], [-1, 0], [0, -0.5]];
    for (const set of weights) {
      const text_prompts = set.map((weight, i) => ({ text: `prompt ${i}`, weight }));
      const json = await call('/v1/generation/gen-a/text-to-image', { method: 'POST', body: JSON.stringify({ text_prompts }), headers: { 'content-type': 'application/json' } });
      expect((await expectError(json, 400, 'invalid_prompts')).message).toMatch(/at least one prompt must have a weight above 0/);
      const fields = Object.fromEntries(text_prompts.flatMap((p, i) => [[`text_prompts[${i}][text]`, p.text], [`text_prompts[${i}][weight]`, String(p.weight)]]));
      await expectError(await call(I2I, { method: 'POST', body: form(fields, { init_image: await png(128, 128) }) }), 400, 'invalid_prompts');
    }
    await expectNothingLeft();
  });

  it('still takes good PNG, JPEG and WebP inputs and hands the worker exactly their bytes', async () => {
    const image = await png(128, 128, { noise: true });
    const res = await call(I2I, { method: 'POST', body: form({ ...prompt, 'text_prompts[1][text]': 'blurry', 'text_prompts[1][weight]': '-1' }, { init_image: image }) });
    expect(res.status, await res.clone().text()).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(Buffer.compare(await api.server.deps.storage.get(`inputs/${id}/init_image`), image)).toBe(0);
    for (const input of [await jpeg(128, 128), await (await import('sharp')).default(image).webp().toBuffer()]) {
      const ok = await call(`${I2I}?dry_run=true`, { method: 'POST', body: form(prompt, { init_image: input }) });
      expect(ok.status, await ok.clone().text()).toBe(200);
    }
  });
});
