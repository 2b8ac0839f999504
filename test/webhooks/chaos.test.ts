/**
 * Processes SIGKILLed in the middle: every finished job's job.completed is still delivered, at least
 * once, and every copy of one event carries the same webhook-id.
 *
 * - The delivery process killed while jobs finish: its replacement's sweep finds the completions nobody
 *   queued.
 * - The delivery process killed during an attempt: the attempt's BullMQ job stalls and the replacement
 *   makes it again, with the same webhook-id.
 * - A generation worker killed mid-job: the job runs again on another worker; job.started and
 *   job.completed still go out once each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { type ChildWorker, type Service, spawnWorker, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';
import {
  type ChildProcessHandle,
  deliveries,
  eventsFor,
  FAST_WEBHOOKS,
  finished,
  QUICK_STALL_RECOVERY,
  type Receiver,
  spawnWebhooks,
  startReceiver,
  submit,
} from './support';

let redis: TestRedis;
let service: Service;
const processes: (ChildProcessHandle | ChildWorker)[] = [];
const workers: TestWorker[] = [];
const receivers: Receiver[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  // Some jobs are queued while no worker runs: they wait for one rather than being refused.
  service = await startService(redis, { env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', REQUIRE_WORKER: 'false' } });
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.kill('SIGKILL')));
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(receivers.map((r) => r.close()));
  await service?.close();
  await redis?.close();
});

/** A delivery process; all of this file's recover stalls quickly (BullMQ's stalled check is shared by them). */
function webhooksProcess(env: Record<string, string> = {}): ChildProcessHandle {
  const handle = spawnWebhooks(service, { ...QUICK_STALL_RECOVERY, ...env });
  processes.push(handle);
  return handle;
}

async function receiver(handler?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(handler);
  receivers.push(r);
  return r;
}

/** Every copy of one job's job.completed has the same webhook-id; returns how many copies arrived. */
function completedCopies(hook: Receiver, jobId: string): number {
  const copies = hook.requests.filter((r) => JSON.parse(r.body).data.id === jobId && JSON.parse(r.body).type === 'job.completed');
  expect(new Set(copies.map((r) => r.headers['webhook-id'])).size).toBeLessThanOrEqual(1);
  return copies.length;
}

describe('processes killed in the middle', () => {
  it('delivers the completions of jobs that finished while the delivery process was dead', async () => {
    const key = await service.apiKey('down');
    const hook = await receiver();
    const first = webhooksProcess();
    await first.ready;
    // Queued while no worker runs, then the delivery process dies, then they all run.
    const jobs = [];
    for (let i = 0; i < 4; i++) jobs.push(await submit(service, key, { webhook: hook.url(), seed: i + 1 }));
    expect(await first.kill('SIGKILL')).toBe(null);
    const worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    workers.push(worker);
    for (const job of jobs) expect((await finished(service, key, job.id)).status).toBe('succeeded');
    expect(hook.requests).toHaveLength(0);

    const second = webhooksProcess();
    await second.ready;
    for (const job of jobs) {
      await waitFor(async () => completedCopies(hook, job.id) >= 1, `job.completed of ${job.id}`, 20_000);
      const log = await deliveries(service, key, job.id);
      expect(log.filter((d) => d.event === 'job.completed')).toHaveLength(1);
    }
    await second.kill('SIGTERM');
    await worker.close();
    workers.splice(workers.indexOf(worker), 1);
  });

  it('makes an attempt again, with the same webhook-id, when the delivery process dies during it', async () => {
    const key = await service.apiKey('mid-attempt');
    // The first request is never answered (the process dies waiting); later ones are.
    const hook = await receiver((_req, res, i) => {
      if (i > 0) res.end('ok');
    });
    // A long attempt timeout, so that the kill lands during the attempt.
    const first = webhooksProcess({ WEBHOOK_TIMEOUT_MS: '30000' });
    await first.ready;
    const worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    workers.push(worker);

    const job = await submit(service, key, { webhook: hook.url() });
    await waitFor(async () => hook.requests.length === 1, 'the first attempt to reach the receiver', 20_000);
    expect(await first.kill('SIGKILL')).toBe(null);

    const second = webhooksProcess();
    await second.ready;
    await waitFor(async () => hook.requests.length >= 2, 'the attempt to be made again', 20_000);
    expect(completedCopies(hook, job.id)).toBeGreaterThanOrEqual(2);
    const delivery = await waitFor(async () => {
      const [d] = await deliveries(service, key, job.id);
      return d?.state === 'succeeded' && d;
    }, 'the delivery to be logged');
    expect(delivery.webhook_id).toBe(hook.requests[0].headers['webhook-id']);
    await second.kill('SIGTERM');
    await worker.close();
    workers.splice(workers.indexOf(worker), 1);
  });

  it('sends job.started and job.completed once each when the generation worker is killed mid-job', async () => {
    const key = await service.apiKey('worker-killed');
    const hook = await receiver();
    const hooks = webhooksProcess();
    const worker = spawnWorker(service, { ENGINES: 'tiny-sd' });
    processes.push(worker);
    await Promise.all([hooks.ready, worker.ready]);

    const job = await submit(service, key, { steps: 150, samples: 4, webhook: hook.url(), webhook_events_filter: ['start', 'completed'] });
    await waitFor(async () => eventsFor(hook.requests, job.id).some((e) => e.type === 'job.started'), 'job.started', 20_000);
    expect(await worker.kill('SIGKILL')).toBe(null);

    const replacement = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    workers.push(replacement);
    expect((await finished(service, key, job.id, 60_000)).status).toBe('succeeded');
    await waitFor(async () => completedCopies(hook, job.id) >= 1, 'job.completed', 20_000);
    // Started again on the second worker, but one job.started event; one job.completed. (A copy with the
    // same webhook-id would be allowed: delivery is at least once.)
    await new Promise((r) => setTimeout(r, 500));
    const log = await deliveries(service, key, job.id);
    expect(log.map((d) => d.event)).toEqual(['job.started', 'job.completed']);
    const ids = [...new Set(hook.requests.filter((r) => JSON.parse(r.body).data.id === job.id).map((r) => r.headers['webhook-id']))];
    expect(ids).toEqual(log.map((d) => d.webhook_id));
    expect(eventsFor(hook.requests, job.id).at(-1)).toMatchObject({ type: 'job.completed', data: { status: 'succeeded' } });
    await hooks.kill('SIGTERM');
  });
});
