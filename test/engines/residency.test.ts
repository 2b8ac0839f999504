/**
 * More engines than memory: a worker loads WORKER_PRELOAD at start and any other engine when a job for it
 * waits (the job showing the `loading model` phase), keeps under WORKER_MODEL_MEMORY_MB and
 * WORKER_MAX_LOADED_ENGINES by unloading the least recently used idle engine, and two workers each
 * holding one engine settle into one engine each under alternating jobs. Real API, real workers, the tiny
 * models, bounds small enough to bite (tiny-sd 32 MB and tiny-sdxl 33 MB of graphs, the upscaler 1 MB).
 */
import { QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNameForEngine } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../support/redis';
import { authed, type Service, startService, startTestWorker, type TestWorker } from '../e2e/support';

let redis: TestRedis;

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis?.close();
});

type Capabilities = { state: string; workers: number; loaded_workers: number };
const capabilitiesOf = async (service: Service, key: string) =>
  Object.fromEntries(((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: Capabilities }[]).map((e) => [e.id, e.capabilities]));

const generate = async (service: Service, key: string, engine: string, seed = 1) => {
  const res = await fetch(`${service.url}/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    headers: authed(key, { 'content-type': 'application/json', accept: 'image/png' }),
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed }),
  });
  expect(res.status, await res.clone().text()).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/png');
  return Buffer.from(await res.arrayBuffer());
};

describe('engines loaded when their jobs come', () => {
  let service: Service;
  let worker: TestWorker;
  let key: string;
  let png: Buffer;
  const prefix = () => `${redis.prefix}lazy`;

  beforeAll(async () => {
    service = await startService(redis, { env: { QUEUE_PREFIX: prefix() } });
    // the default preload: the default engine (tiny-sd, the first generation engine) and nothing else
    worker = await startTestWorker(service, { WORKER_MODEL_MEMORY_MB: '40' });
    key = await service.apiKey('lazy');
  });
  afterAll(async () => {
    await worker?.close(1000);
    await service?.close();
  });

  it('loads only the default engine at start; the others are available, served by it', async () => {
    expect(worker.loaded).toEqual(['tiny-sd']);
    expect(worker.engines).toEqual(['tiny-sd', 'tiny-sd3', 'tiny-sdxl', 'tiny-upscaler-x2']);
    const caps = await capabilitiesOf(service, key);
    expect(caps['tiny-sd']).toMatchObject({ state: 'ready', workers: 1, loaded_workers: 1 });
    expect(caps['tiny-sdxl']).toMatchObject({ state: 'available', workers: 1, loaded_workers: 0 });
  });

  it('a job for an engine not loaded waits while the worker loads it (progress phase `loading model`), then succeeds; over the bound, the least recently used idle engine is unloaded', async () => {
    const events = new QueueEvents(queueNameForEngine('tiny-sdxl'), { prefix: prefix(), connection: { url: redis.url } });
    await events.waitUntilReady();
    const phases: unknown[] = [];
    events.on('progress', ({ data }) => phases.push((data as { phase?: string }).phase ?? 'step'));
    try {
      const loadsBefore = worker.loads;
      png = await generate(service, key, 'tiny-sdxl');
      await expect.poll(() => phases[0]).toBe('loading model');
      expect(phases.slice(1).every((p) => p === 'step')).toBe(true);
      expect(worker.loads).toBe(loadsBefore + 1);
      // 32 + 33 MB of graphs do not fit WORKER_MODEL_MEMORY_MB=40: tiny-sd went
      expect(worker.loaded).toEqual(['tiny-sdxl']);
      expect(worker.unloads).toBe(1);
      // what it held before and after, as the worker measured it (docs/BENCHMARKS.md has the numbers)
      const unloaded = worker.engineLog.find((l) => String(l.msg).startsWith('engine unloaded'))!;
      expect(unloaded).toMatchObject({ engine: 'tiny-sd', reason: 'evicted', rss_mb_before: expect.any(Number), rss_mb_after: expect.any(Number), loaded: [] });
      console.log(`RSS around the eviction of tiny-sd: ${unloaded.rss_mb_before} MB -> ${unloaded.rss_mb_after} MB`);
      const caps = await capabilitiesOf(service, key);
      expect(caps['tiny-sdxl']).toMatchObject({ state: 'ready', loaded_workers: 1 });
      expect(caps['tiny-sd']).toMatchObject({ state: 'available', workers: 1, loaded_workers: 0 });
    } finally {
      await events.close();
    }
  });

  it('an engine that fits beside the loaded one is loaded without unloading it', async () => {
    const unloads = worker.unloads;
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'in.png');
    const res = await fetch(`${service.url}/v1/generation/tiny-upscaler-x2/image-to-image/upscale`, { method: 'POST', headers: authed(key, { accept: 'image/png' }), body: form });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(worker.loaded.sort()).toEqual(['tiny-sdxl', 'tiny-upscaler-x2']);
    expect(worker.unloads).toBe(unloads);
    // and back to tiny-sd: tiny-sdxl is the least recently used of what must go
    await generate(service, key, 'tiny-sd');
    expect(worker.loaded.sort()).toEqual(['tiny-sd', 'tiny-upscaler-x2']);
  });
});

describe('WORKER_MAX_LOADED_ENGINES', () => {
  it('two workers holding one engine each, with jobs alternating between two engines, settle: after the first load, no more loads', async () => {
    const service = await startService(redis, { env: { QUEUE_PREFIX: `${redis.prefix}settle` } });
    const workers: TestWorker[] = [];
    try {
      for (let i = 0; i < 2; i++) workers.push(await startTestWorker(service, { WORKER_MAX_LOADED_ENGINES: '1' }));
      const key = await service.apiKey('settle');
      expect(workers.map((w) => w.loads)).toEqual([1, 1]);
      for (let round = 0; round < 5; round++) {
        await Promise.all([generate(service, key, 'tiny-sd', round), generate(service, key, 'tiny-sdxl', round)]);
      }
      // the two preloads, and one load of tiny-sdxl (unloading that worker's tiny-sd): nothing since
      expect(workers.reduce((n, w) => n + w.loads, 0)).toBe(3);
      expect(workers.map((w) => w.loaded).flat().sort()).toEqual(['tiny-sd', 'tiny-sdxl']);
      const caps = await capabilitiesOf(service, key);
      expect(caps['tiny-sd']).toMatchObject({ state: 'ready', workers: 2, loaded_workers: 1 });
      expect(caps['tiny-sdxl']).toMatchObject({ state: 'ready', workers: 2, loaded_workers: 1 });
    } finally {
      await Promise.all(workers.map((w) => w.close(1000)));
      await service.close();
    }
  }, 120_000);
});
