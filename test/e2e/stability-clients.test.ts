/**
 * Requests shaped as published Stability clients send them: the key as the whole Authorization value,
 * a multipart image appended as a bare Buffer (form-data: application/octet-stream, no filename), and
 * an account whose e-mail is a string. Stability's engine ids reach engines through ENGINE_ALIASES.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { multipartBody, rawRequest } from '../security/support';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, ENGINE_ALIASES: 'stable-diffusion-v1-6=gen-a' });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

describe('published Stability clients', () => {
  it('the key as the whole Authorization value is accepted; another scheme is not', async () => {
    const { api_key } = await api.account('bare-key');
    expect((await fetch(`${api.url}/v1/engines/list`, { headers: { authorization: api_key } })).status).toBe(200);
    expect((await fetch(`${api.url}/v1/engines/list`, { headers: { authorization: `Bearer ${api_key}` } })).status).toBe(200);
    for (const authorization of [`Basic ${api_key}`, 'Bearer', `${api_key} extra`]) {
      expect((await fetch(`${api.url}/v1/engines/list`, { headers: { authorization } })).status, authorization).toBe(401);
    }
  });

  it('an init image appended as a bare Buffer (octet-stream, no filename) is the file, under Stability\'s engine id', async () => {
    const { api_key } = await api.account('sample');
    const image = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#0000ff' } }).png().toBuffer();
    const boundary = '--------------------------sample';
    // What the form-data package writes for formData.append('init_image', buffer) in Stability's v1 TypeScript sample.
    const body = multipartBody(boundary, [
      { headers: ['Content-Disposition: form-data; name="init_image"', 'Content-Type: application/octet-stream'], content: image },
      { headers: ['Content-Disposition: form-data; name="text_prompts[0][text]"'], content: 'a red circle' },
      { headers: ['Content-Disposition: form-data; name="image_strength"'], content: '0.35' },
    ]);
    const res = await rawRequest(
      api.url,
      `POST /v1/generation/stable-diffusion-v1-6/image-to-image HTTP/1.1\nHost: x\nAuthorization: ${api_key}\nAccept: application/json\nContent-Type: multipart/form-data; boundary=${boundary}\nContent-Length: ${body.length}\nConnection: close\n`,
      body,
    );
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body).artifacts).toHaveLength(1);
  });

  it('GET /v1/user/account gives the e-mail as a string: the one given at creation, else ""', async () => {
    const created = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'mail', email: 'ops@example.com' }) })).json();
    const withMail = await (await fetch(`${api.url}/v1/user/account`, { headers: { authorization: created.api_key } })).json();
    expect(withMail.email).toBe('ops@example.com');
    const { api_key } = await api.account('no-mail');
    expect((await (await fetch(`${api.url}/v1/user/account`, { headers: { authorization: api_key } })).json()).email).toBe('');
    const bad = await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'x', email: 'not an address' }) });
    expect(bad.status).toBe(400);
  });
});
