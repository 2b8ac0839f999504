/**
 * Storage that answers but refuses writes: a submission is a 503 that names storage (never Redis), with
 * nothing held; /readyz fails from the first failed write until a write works again.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { expectError, form, png } from './support';

let redis: TestRedis;
let api: TestApi;
let alice: { id: string; api_key: string };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  alice = await api.account('alice');
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
});

describe('storage refusing writes', () => {
  it('answers 503 naming storage, fails readiness until writes work, then takes uploads again', async () => {
    const dir = (api.config.storage as { local: { dir: string } }).local.dir;
    const upload = async () =>
      fetch(`${api.url}/v1/generation/up-x2/image-to-image/upscale`, {
        method: 'POST',
        body: form({}, { image: await png(64, 64) }),
        headers: { authorization: `Bearer ${alice.api_key}`, prefer: 'respond-async' },
      });
    expect((await fetch(`${api.url}/readyz`)).status).toBe(200);
    // A file where the uploads folder should be: the folder answers, writes under inputs/ fail.
    writeFileSync(join(dir, 'inputs'), 'in the way');
    const refused = await expectError(await upload(), 503, 'service_unavailable');
    expect(refused.message).toMatch(/^storage \(local\) could not store the upload; retry shortly$/);
    const ready = await fetch(`${api.url}/readyz`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).message).toBe('storage (local) refuses writes');
    expect(await (await fetch(`${api.url}/v1/user/balance`, { headers: { authorization: `Bearer ${alice.api_key}` } })).json()).toEqual({ credits: 10 });

    rmSync(join(dir, 'inputs'));
    expect((await fetch(`${api.url}/readyz`)).status).toBe(200);
    expect((await upload()).status).toBe(202);
  });
});
