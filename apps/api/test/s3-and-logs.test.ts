import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../src/logger';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startTestS3, type TestS3 } from '../../../test/support/s3';
import { ADMIN_TOKEN, startTestApi, type TestApi } from '../../../test/support/api';
import { startStubWorker } from './support/stub-worker';

let redis: TestRedis;
let s3: TestS3;
let api: TestApi;
let worker: { close(): Promise<void> };
const lines: string[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  s3 = await startTestS3();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  api = await startTestApi(
    {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: redis.prefix,
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    },
    { logger: createLogger({ logLevel: 'info' }, sink) },
  );
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await s3?.close();
  await redis?.close();
});

it('stores results in S3 and answers presigned URLs that download them; logs carry ids but no secrets', async () => {
  expect(api.server.deps.storage.kind).toBe('s3');
  const { api_key } = await api.account();
  const res = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api_key}`, 'content-type': 'application/json', prefer: 'wait=10', accept: 'image/webp' },
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }),
  });
  const job = await res.json();
  expect(job.status).toBe('succeeded');
  const url = new URL(job.artifacts[0].url);
  expect(url.origin).toBe(s3.endpoint);
  expect(url.pathname).toBe(`/${s3.bucket}/generations/${job.id}/0.webp`);
  expect(url.searchParams.get('X-Amz-Expires')).toBe(String(api.config.artifactUrlExpiry));
  const image = await fetch(url);
  expect(image.status).toBe(200);
  expect(image.headers.get('content-type')).toBe('image/webp');
  expect((await image.arrayBuffer()).byteLength).toBeGreaterThan(0);

  // The sync Stability answer reads the bytes back from S3.
  const sync = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api_key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }),
  });
  expect((await sync.json()).artifacts[0].finishReason).toBe('SUCCESS');
  expect(await (await fetch(`${api.url}/readyz`)).json()).toEqual({ status: 'ready' });

  const log = lines.join('\n');
  expect(log).not.toContain(api_key);
  expect(log).not.toContain(ADMIN_TOKEN);
  const queued = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'job queued' && l.job_id === job.id);
  expect(queued).toBeDefined();
  const request = lines.map((l) => JSON.parse(l)).find((l) => l.req?.url === '/v1/generation/gen-a/text-to-image');
  expect(request.req.id).toEqual(expect.any(String));
  // Request lines carry no headers at all, so no Authorization header can reach them.
  expect(request.req.headers).toBeUndefined();
  expect(request.res).toEqual({ status: expect.any(Number) });
  // Credentials inside logged objects are redacted by path.
  const sink: string[] = [];
  const probe = createLogger({ logLevel: 'info' }, { write: (l: string) => void sink.push(l) });
  probe.info({ account: { api_key: 'sk-leak', secret: 'whsec_leak' }, token: 't-leak' }, 'probe');
  expect(sink.join('')).not.toMatch(/sk-leak|whsec_leak|t-leak/);
  expect(sink.join('')).toContain('[redacted]');
});
