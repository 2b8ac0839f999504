/**
 * Storage that answers but refuses writes: a submission is a 503 that names storage (never Redis), with
 * nothing held; /readyz fails from the first failed write until a write works again.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { startTestS3 } from '../support/s3';
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

  it('with S3 down: 503 naming S3 storage (never Redis), nothing held, /readyz fails', async () => {
    const s3 = await startTestS3();
    const onS3 = await startTestApi({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: `${redis.prefix}s3`,
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    });
    try {
      const bob = await onS3.account('bob');
      expect((await fetch(`${onS3.url}/readyz`)).status).toBe(200);
      await s3.close();
      const res = await fetch(`${onS3.url}/v1/generation/up-x2/image-to-image/upscale`, {
        method: 'POST',
        body: form({}, { image: await png(64, 64) }),
        headers: { authorization: `Bearer ${bob.api_key}`, prefer: 'respond-async' },
      });
      const refused = await expectError(res, 503, 'service_unavailable');
      expect(refused.message).toBe('storage (s3) could not store the upload; retry shortly');
      expect(res.headers.get('retry-after')).toBe('5');
      const ready = await fetch(`${onS3.url}/readyz`);
      expect(ready.status).toBe(503);
      expect((await ready.json()).message).toMatch(/^storage \(s3\) /);
      expect(await (await fetch(`${onS3.url}/v1/user/balance`, { headers: { authorization: `Bearer ${bob.api_key}` } })).json()).toEqual({ credits: 10 });
    } finally {
      await onS3.close();
    }
  }, 60_000);
});
