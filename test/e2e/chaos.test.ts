/**
 * Failures under load: a worker SIGKILLed in the middle of a job (its job is recovered by another
 * worker and completes exactly once), and Redis stopped and restarted under the API and a worker.
 */
import { QueueEvents } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNameForEngine } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../support/redis';
import { authed, type ChildWorker, readEvents, type Service, spawnWorker, startService, startTestWorker, type TestWorker, textToImageBody, waitFor } from './support';

describe('a worker killed in the middle of a job', () => {
  let redis: TestRedis;
  let service: Service;
  let events: QueueEvents;
  const children: ChildWorker[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    service = await startService(redis);
    events = new QueueEvents(queueNameForEngine('tiny-sd'), { prefix: redis.prefix, connection: { url: redis.url } });
    await events.waitUntilReady();
  });
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await events?.close();
    await service?.close();
    await redis?.close();
  });

  it('loses nothing: another worker takes the job over and it completes exactly once', async () => {
    const key = await service.apiKey();
    const first = spawnWorker(service, { ENGINES: 'tiny-sd' });
    children.push(first);
    await first.ready;

    // Counted from before the job exists: its id is only known after the POST.
    const seen = { completed: [] as string[], failed: [] as string[] };
    for (const name of ['completed', 'failed'] as const) events.on(name, ({ jobId: id }: { jobId: string }) => seen[name].push(id));

    const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
      body: textToImageBody({ steps: 150, samples: 4 }),
    });
    const job = (await res.json()) as { id: string; urls: { events: string } };
    await readEvents(job.urls.events, key, (e) => e.event === 'progress' && e.data.step >= 5);
    expect(await first.kill('SIGKILL')).toBe(null);

    const second = spawnWorker(service, { ENGINES: 'tiny-sd' });
    children.push(second);
    const done = await waitFor(
      async () => {
        const j = await (await fetch(`${service.url}/v1/jobs/${job.id}`, { headers: authed(key) })).json();
        return ['succeeded', 'failed', 'canceled'].includes(j.status) && j;
      },
      'the job to finish on the second worker',
      90_000,
    );
    expect(done.status).toBe('succeeded');
    expect(done.artifacts).toHaveLength(4);
    for (const artifact of done.artifacts) {
      const image = await fetch(artifact.url);
      expect(image.status).toBe(200);
      expect((await sharp(Buffer.from(await image.arrayBuffer())).metadata()).width).toBe(128);
    }
    // Started on each worker, completed once, never failed.
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.completed.filter((id) => id === job.id)).toHaveLength(1);
    expect(seen.failed.filter((id) => id === job.id)).toHaveLength(0);
    const started = (w: ChildWorker) => w.lines.some((l) => l.includes('"job started"') && l.includes(job.id));
    expect([started(first), started(second)]).toEqual([true, true]);
  });

  it('SIGTERM: the worker takes no new job, finishes the running one and exits 0', async () => {
    const key = await service.apiKey('sigterm');
    // Only this worker serves the queue.
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    const worker = spawnWorker(service, { ENGINES: 'tiny-sd' });
    children.push(worker);
    await worker.ready;
    const submit = async () => {
      const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
        method: 'POST',
        headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
        body: textToImageBody({ steps: 100 }),
      });
      return (await res.json()) as { id: string; urls: { events: string } };
    };
    const running = await submit();
    const next = await submit();
    await readEvents(running.urls.events, key, (e) => e.event === 'progress' && e.data.step >= 3);
    expect(await worker.kill('SIGTERM')).toBe(0);
    const status = async (id: string) => (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()).status;
    expect(await status(running.id)).toBe('succeeded');
    expect(await status(next.id)).toBe('queued');
  });
});

describe('Redis stopped and restarted under the API', () => {
  let redis: TestRedis;
  let service: Service;
  let worker: TestWorker;

  beforeAll(async () => {
    redis = await startTestRedis({ private: true });
    service = await startService(redis);
    worker = await startTestWorker(service);
  });
  afterAll(async () => {
    await worker?.close(1000);
    await service?.close();
    await redis?.close();
  });

  const generate = (key: string) =>
    fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: textToImageBody() });

  it('answers 503 with a clear body while Redis is down, and recovers by itself', async () => {
    const key = await service.apiKey();
    expect((await generate(key)).status).toBe(200);

    await redis.stop();
    const down = await waitFor(async () => {
      const res = await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) });
      return res.status === 503 && res;
    }, '503 while Redis is down', 10_000);
    expect(down.headers.get('retry-after')).toBeTruthy();
    const body = await down.json();
    expect(body).toMatchObject({ name: 'service_unavailable' });
    expect(body.message).toMatch(/redis/i);
    expect(body.id).toBeTruthy();
    const started = Date.now();
    expect((await generate(key)).status).toBe(503);
    // Fails fast: no waiting on a dead connection.
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await fetch(`${service.url}/readyz`)).status).toBe(503);
    expect((await fetch(`http://127.0.0.1:${worker.healthPort}/readyz`)).status).toBe(503);

    await redis.restart();
    await waitFor(async () => (await fetch(`${service.url}/readyz`)).status === 200, 'the API to be ready again', 15_000);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${worker.healthPort}/readyz`)).status === 200, 'the worker to be ready again', 15_000);
    // The test server keeps no data across restarts: a new account, then a job end to end again, once
    // the worker has claimed its engine again (it does so as soon as its connection is back).
    const again = await service.apiKey('after-restart');
    await waitFor(async () => {
      const list = (await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(again) })).json()) as { id: string; capabilities: { workers: number } }[];
      return (list.find((e) => e.id === 'tiny-sd')?.capabilities.workers ?? 0) > 0;
    }, 'the worker to claim tiny-sd again', 10_000);
    const res = await generate(again);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { artifacts: unknown[] }).artifacts).toHaveLength(1);
  });
});
