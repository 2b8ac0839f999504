/**
 * The delivery process without a models folder or an engine list: started before any API, it reads the
 * jobs' events of engines registered after it from the job event stream (the sweep is set an hour
 * apart, so a delivery here can only come from the stream).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../../../packages/webhooks/test/support/receiver';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { freePort, startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startStubWorker } from '../../api/test/support/stub-worker';
import { parseConfig } from '../src/config';
import { type RunningDeliveryProcess, startDeliveryProcess } from '../src/delivery-process';

const SECRET = 'test-artifact-secret-0123456789';
let redis: TestRedis;
let receiver: Receiver;
let delivery: RunningDeliveryProcess;
let api: TestApi;
let worker: { close(): Promise<void> };
const artifactsDir = mkdtempSync(join(tmpdir(), 'sdq-artifacts-'));

beforeAll(async () => {
  redis = await startTestRedis();
  receiver = await startReceiver();
  // the API's public URL, known before it starts: deliveries name it
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const config = parseConfig({
    PUBLIC_URL: publicUrl,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: redis.prefix,
    ARTIFACTS_DIR: artifactsDir,
    ARTIFACT_URL_SECRET: SECRET,
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    WEBHOOK_HEALTH_PORT: '0',
    WEBHOOK_HEALTH_HOST: '127.0.0.1',
    WEBHOOK_SWEEP_INTERVAL: '3600',
    LOG_LEVEL: 'silent',
  });
  expect(config).not.toHaveProperty('modelsDir');
  delivery = await startDeliveryProcess(config, pino({ level: 'silent' }));
  // only now does any engine exist
  api = await startTestApi({ PORT: String(port), PUBLIC_URL: publicUrl, REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, ARTIFACTS_DIR: artifactsDir, ARTIFACT_URL_SECRET: SECRET, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await delivery?.close();
  await receiver?.close();
  await redis?.close();
});

describe('the delivery process learns engines from Redis', () => {
  it('the API registers its engines in <prefix>:engines', async () => {
    const engines = await api.server.deps.store.redis.smembers(`${redis.prefix}:engines`);
    expect(engines.sort()).toEqual([...api.server.deps.engines.keys()].sort());
    expect(engines).toContain('gen-a');
  });

  it("hears a job of an engine registered after it started, and sends its job.completed with the API's job object", async () => {
    await new Promise((r) => setTimeout(r, 600)); // a refresh or two
    const { api_key: key } = await api.account();
    const res = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'wait=10' },
      body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 10, webhook: receiver.url('/hook') }),
    });
    const job = (await res.json()) as { id: string; status: string };
    expect(job.status).toBe('succeeded');
    const deadline = Date.now() + 10_000;
    while (!receiver.requests.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(receiver.requests).toHaveLength(1);
    const body = JSON.parse(receiver.requests[0].body);
    expect(body.type).toBe('job.completed');
    const own = await (await fetch(`${api.url}/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${key}` } })).json();
    expect({ ...body.data, artifacts: [] }).toEqual({ ...own, artifacts: [] });
    // the delivery's artifact URL (signed for the retention) opens at the API
    const image = await fetch(body.data.artifacts[0].url);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/png');
  });

  it('answers /readyz with Redis and storage reachable', async () => {
    const res = await fetch(`http://127.0.0.1:${delivery.healthPort}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready' });
  });
});
