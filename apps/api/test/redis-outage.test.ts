import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startTestApi, type TestApi } from '../../../test/support/api';

let redis: TestRedis;
let api: TestApi;
beforeAll(async () => {
  // A private server even when REDIS_URL is set: this test stops and restarts it.
  redis = await startTestRedis({ private: true });
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
});

it('answers 503 service_unavailable fast while Redis is down, and recovers when it returns', async () => {
  const { api_key } = await api.account();
  const get = () => fetch(`${api.url}/v1/engines/list`, { headers: { authorization: `Bearer ${api_key}` } });
  const submit = () =>
    fetch(`${api.url}/v1/generation/gen-idle/text-to-image`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api_key}`, 'content-type': 'application/json', prefer: 'respond-async' },
      body: JSON.stringify({ text_prompts: [{ text: 'a' }] }),
    });
  expect((await get()).status).toBe(200);

  await redis.stop();
  await new Promise((r) => setTimeout(r, 200));
  for (const request of [get, submit, () => fetch(`${api.url}/readyz`)]) {
    const started = Date.now();
    const res = await request();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toMatchObject({ name: 'service_unavailable', id: expect.any(String) });
  }
  expect((await fetch(`${api.url}/healthz`)).status).toBe(200);

  // The private server kept no data (no persistence): the account is gone, so recreate one after recovery.
  await redis.restart();
  const deadline = Date.now() + 10_000;
  while ((await fetch(`${api.url}/readyz`)).status !== 200) {
    if (Date.now() > deadline) throw new Error('the API did not recover');
    await new Promise((r) => setTimeout(r, 100));
  }
  const again = await api.account('after');
  const res = await fetch(`${api.url}/v1/generation/gen-idle/text-to-image`, {
    method: 'POST',
    headers: { authorization: `Bearer ${again.api_key}`, 'content-type': 'application/json', prefer: 'respond-async' },
    body: JSON.stringify({ text_prompts: [{ text: 'a' }] }),
  });
  expect(res.status).toBe(202);
});
