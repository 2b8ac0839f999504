/**
 * GET /v1/admin/workers: the live workers with their engines, execution providers, current jobs, jobs
 * done and heartbeat, from what each worker reports to Redis; a stopped worker is gone at once and a dead
 * one (no heartbeat) drops off when its heartbeat window ends.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerInfoKey, workersKey } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../support/redis';
import { ADMIN_TOKEN, authed, type Service, startService, startTestWorker, type TestWorker, textToImageBody, waitFor } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis);
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-upscaler-x2' });
  key = await service.apiKey('workers');
}, 60_000);
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

interface Listed { id: string; host: string; pid: number; engines: string[]; providers: Record<string, string>; current_jobs: string[]; jobs_done: number; started_at: string; last_heartbeat: string }
const list = async (): Promise<Listed[]> => {
  const res = await fetch(`${service.url}/v1/admin/workers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: Listed[] }).data;
};

describe('GET /v1/admin/workers', () => {
  it('lists the worker with its engines, providers and heartbeat; only for admins', async () => {
    const [w] = await list();
    // it serves both and has loaded the default engine (WORKER_PRELOAD's default); a provider once loaded
    expect(w).toMatchObject({ pid: process.pid, engines: ['tiny-sd', 'tiny-upscaler-x2'], loaded: ['tiny-sd'], providers: { 'tiny-sd': 'cpu' }, current_jobs: [] });
    expect(Date.now() - Date.parse(w.last_heartbeat)).toBeLessThan(15_000);
    expect(Date.parse(w.started_at)).toBeLessThanOrEqual(Date.parse(w.last_heartbeat));
    expect((await fetch(`${service.url}/v1/admin/workers`, { headers: authed(key) })).status).toBe(403);
  });

  it('shows the job it is running, then counts it done', async () => {
    const before = (await list())[0].jobs_done;
    const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
      method: 'POST',
      body: textToImageBody({ steps: 150 }),
      headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
    });
    const { id } = (await res.json()) as { id: string };
    await waitFor(async () => (await list())[0].current_jobs.includes(id), 'the running job to be listed', 30_000);
    await waitFor(async () => {
      const [w] = await list();
      return w.current_jobs.length === 0 && w.jobs_done === before + 1;
    }, 'the job to be counted done', 60_000);
  });

  it('a worker without a heartbeat drops off when its window ends', async () => {
    const client = new Redis(redis.url);
    try {
      const [seconds] = await client.time();
      const expires = Number(seconds) * 1000 + 1500;
      await client.zadd(workersKey(redis.prefix), expires, 'ghost');
      await client.hset(workerInfoKey(redis.prefix, 'ghost'), { host: 'gone', pid: '1', engines: '["tiny-sd"]', providers: '{}', current_jobs: '[]', jobs_done: '0', started_at: '0', last_heartbeat: String(expires - 15_000) });
      expect((await list()).map((w) => w.id)).toContain('ghost');
      await waitFor(async () => !(await list()).some((w) => w.id === 'ghost'), 'the dead worker to drop off', 5000);
    } finally {
      client.disconnect();
    }
  });

  it('a worker that stops is gone at once', async () => {
    const second = await startTestWorker(service, { ENGINES: 'tiny-upscaler-x2' });
    expect(await list()).toHaveLength(2);
    await second.close(1000);
    expect(await list()).toHaveLength(1);
  });
});
