/**
 * Webhooks on time: a job's end reaches its webhook within a second, whatever the delivery process knew
 * when the job ended (here it starts before any engine exists). Real API, real workers and the delivery
 * process as a child; its periodic sweep set
 * an hour apart (WEBHOOK_SWEEP_INTERVAL), so a delivery here comes from the job event stream (the sweep
 * still runs once as the process starts, before these jobs exist, except where a test says otherwise).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { ARTIFACT_URL_SECRET, type Service, spawnEntry, startService, startTestWorker, storageEnv, type TestWorker, waitFor } from '../e2e/support';
import { type ChildProcessHandle, eventsFor, FAST_WEBHOOKS, finished, type Receiver, spawnWebhooks, startReceiver, submit } from './support';

const NO_SWEEP = { ...FAST_WEBHOOKS, WEBHOOK_SWEEP_INTERVAL: '3600' };
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

interface Fresh {
  redis: TestRedis;
  service: Service;
  hooks: ChildProcessHandle;
  receiver: Receiver;
  key: string;
}

/**
 * A fresh deployment on an empty Redis prefix, the delivery process first: it starts before any API has
 * registered an engine (the case that waited for the sweep), then the API and a tiny-sd worker.
 */
async function freshStart(): Promise<Fresh> {
  const redis = await startTestRedis();
  cleanups.push(() => redis.close());
  const storage = storageEnv();
  cleanups.push(async () => storage.cleanup());
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, ...storage.env, ...NO_SWEEP, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' };
  // its PUBLIC_URL is a stand-in: these tests read no URL out of a delivery
  const hooks = spawnEntry('apps/webhooks/src/main.ts', { ...env, PUBLIC_URL: 'http://127.0.0.1:9', ARTIFACT_URL_SECRET, WEBHOOK_HEALTH_PORT: '0', WEBHOOK_HEALTH_HOST: '127.0.0.1' }, 'webhook delivery process ready');
  cleanups.push(() => hooks.kill('SIGTERM'));
  await hooks.ready;
  const service = await startService(redis, { env });
  cleanups.push(() => service.close());
  const worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
  cleanups.push(() => worker.close(1000));
  const receiver = await startReceiver();
  cleanups.push(() => receiver.close());
  return { redis, service, hooks, receiver, key: await service.apiKey('on-time') };
}

/** ms from the job's end (finished_at) to the arrival of its job.completed at the receiver. */
async function completedDelay(f: Pick<Fresh, 'service' | 'receiver' | 'key'>, jobId: string): Promise<number> {
  const job = await finished(f.service, f.key, jobId);
  const request = await waitFor(async () => f.receiver.requests.find((r) => JSON.parse(r.body).data?.id === jobId && JSON.parse(r.body).type === 'job.completed'), `job.completed of ${jobId}`, 15_000);
  return performance.timeOrigin + request.at - Date.parse(job.finished_at);
}

describe('webhooks on time', () => {
  it("after a fresh start, the first job's job.completed arrives within 1 s of its end, with job.started and job.progress (5 starts)", async () => {
    const delays: number[] = [];
    for (let round = 0; round < 5; round++) {
      const f = await freshStart();
      const job = await submit(f.service, f.key, { steps: 30, webhook: f.receiver.url('/hook'), webhook_events_filter: ['start', 'progress', 'completed'] });
      delays.push(await completedDelay(f, job.id));
      const types = eventsFor(f.receiver.requests, job.id).map((e) => e.type);
      expect(types[0], `round ${round}`).toBe('job.started');
      expect(types, `round ${round}`).toContain('job.progress');
      expect(types.at(-1), `round ${round}`).toBe('job.completed');
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
    for (const delay of delays) expect(delay, `delays ${delays.join(', ')} ms`).toBeLessThan(1000);
  });

  it('an engine that appears after the delivery process started gets its first job delivered within 1 s', async () => {
    const f = await freshStart();
    // an engine no worker served, nor any delivery process listened for, until now
    const late: TestWorker = await startTestWorker(f.service, { ENGINES: 'tiny-sd3' });
    cleanups.push(() => late.close(1000));
    const job = await submit(f.service, f.key, { steps: 10, webhook: f.receiver.url('/hook'), webhook_events_filter: ['start', 'completed'] }, 'tiny-sd3');
    expect(await completedDelay(f, job.id)).toBeLessThan(1000);
    expect(eventsFor(f.receiver.requests, job.id).map((e) => e.type)).toEqual(['job.started', 'job.completed']);
  });

  it('jobs that ended while the delivery process was down are delivered within a few seconds of its return, each once', async () => {
    const f = await freshStart();
    await f.hooks.kill('SIGKILL');
    const jobs: { id: string }[] = [];
    for (let i = 0; i < 3; i++) jobs.push(await submit(f.service, f.key, { steps: 10, seed: 100 + i, webhook: f.receiver.url('/hook') }));
    for (const job of jobs) await finished(f.service, f.key, job.id);
    expect(f.receiver.requests).toHaveLength(0);
    // back, as the supervisor brings it back: it reads the stream on from its group's last position (its
    // start-up sweep finds the same ends; either way each is sent once)
    const back = spawnWebhooks(f.service, NO_SWEEP);
    cleanups.push(() => back.kill('SIGTERM'));
    await back.ready;
    const returned = performance.now();
    await waitFor(async () => jobs.every((job) => eventsFor(f.receiver.requests, job.id).length === 1), 'every job delivered', 10_000);
    expect(performance.now() - returned).toBeLessThan(3000);
    // and once: nothing more comes
    await new Promise((r) => setTimeout(r, 1500));
    for (const job of jobs) expect(eventsFor(f.receiver.requests, job.id).map((e) => e.type)).toEqual(['job.completed']);
  });
});
