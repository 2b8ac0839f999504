/**
 * An error about a request field names it in the body: `field` in sdq's (Stability v1) and the v2beta
 * shape, `param` in OpenAI's. Raised where the error is, never read back out of the message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { png } from '../../../test/security/support';

let redis: TestRedis;
let api: TestApi;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, V2BETA_ENGINES: 'core=gen-a,ultra=gen-a' });
  key = (await api.account('fields')).api_key;
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
});

const auth = () => ({ authorization: `Bearer ${key}` });
const json = (path: string, body: unknown) =>
  fetch(api.url + path, { method: 'POST', body: JSON.stringify(body), headers: { ...auth(), 'content-type': 'application/json', accept: 'application/json' } });
const T2I = '/v1/generation/gen-a/text-to-image';

async function bodyOf(res: Response, status: number): Promise<Record<string, unknown>> {
  expect(res.status).toBe(status);
  return (await res.json()) as Record<string, unknown>;
}

describe("sdq's own (Stability v1) error body", () => {
  it('names a schema field, nested ones by their path', async () => {
    const steps = await bodyOf(await json(T2I, { text_prompts: [{ text: 'a' }], steps: 500 }), 400);
    expect(steps).toMatchObject({ name: 'bad_request', field: 'steps' });
    expect(steps.message).toMatch(/^steps: /);
    const text = await bodyOf(await json(T2I, { text_prompts: [{ text: 7 }] }), 400);
    expect(text).toMatchObject({ field: 'text_prompts[0].text' });
    expect(text.message).toMatch(/^text_prompts\[0\]\.text: /);
  });

  it('names the field of a rule the schema cannot say: a size, a pair, an upload', async () => {
    const size = await bodyOf(await json(T2I, { text_prompts: [{ text: 'a' }], width: 100, height: 128 }), 400);
    expect(size).toMatchObject({ name: 'invalid_height_or_width', field: 'width' });
    const form = new FormData();
    form.set('text_prompts[0][text]', 'a');
    form.set('init_image', new Blob(['not an image']), 'x.png');
    const upload = await bodyOf(await fetch(api.url + '/v1/generation/gen-a/image-to-image', { method: 'POST', body: form, headers: { ...auth(), accept: 'application/json' } }), 400);
    expect(upload).toMatchObject({ name: 'invalid_mime_type', field: 'init_image' });
    const forbidden = await bodyOf(await fetch(api.url + T2I, { method: 'POST', body: '{"text_prompts":[{"text":"a","__proto__":{}}]}', headers: { ...auth(), 'content-type': 'application/json' } }), 400);
    expect(forbidden).toMatchObject({ name: 'bad_request', field: 'text_prompts[0].__proto__' });
  });

  it('has no field when the error is about no field', async () => {
    const unknown = await bodyOf(await json('/v1/generation/nope/text-to-image', { text_prompts: [{ text: 'a' }] }), 404);
    expect(unknown).not.toHaveProperty('field');
    const unauthorized = await bodyOf(await fetch(api.url + '/v1/user/balance'), 401);
    expect(Object.keys(unauthorized).sort()).toEqual(['id', 'message', 'name']);
  });
});

describe('the v2beta error body', () => {
  it('names the field beside errors', async () => {
    const form = new FormData();
    form.set('prompt', 'a');
    form.set('image', new Blob([await png(128, 128)]), 'x.png');
    const res = await fetch(api.url + '/v2beta/stable-image/generate/ultra', { method: 'POST', body: form, headers: { ...auth(), accept: 'application/json' } });
    const body = await bodyOf(res, 400);
    expect(body).toMatchObject({ name: 'bad_request', field: 'strength' });
    expect(body.errors).toEqual([expect.stringMatching(/^strength: /)]);
  });
});

describe("OpenAI's error body", () => {
  it('puts the field in param, null when there is none', async () => {
    const size = await bodyOf(await json('/v1/images/generations', { model: 'gen-a', prompt: 'a', size: 'big' }), 400);
    expect(size).toMatchObject({ error: { param: 'size', code: 'invalid_height_or_width' } });
    const model = await bodyOf(await json('/v1/images/generations', { model: 'nope', prompt: 'a' }), 404);
    expect(model).toMatchObject({ error: { param: 'model' } });
    const none = await bodyOf(await fetch(api.url + '/v1/images/generations', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }), 401);
    expect(none).toMatchObject({ error: { param: null, code: 'unauthorized' } });
  });
});
