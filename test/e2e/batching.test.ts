/**
 * Batching in the service: a worker with WORKER_BATCH_SIZE=4 runs four compatible queued jobs as one
 * denoising batch (its metrics say so), and every job comes out as it does from a worker that does not
 * batch: the same artifact bytes, its own progress to the last step, charged its own price once; a job
 * canceled inside a batch is canceled and not charged while the others finish.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { authed, accountWith, type Service, startService, startTestWorker, type TestWorker, waitFor } from './support';

let redis: TestRedis;
let service: Service;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, { env: { REQUIRE_WORKER: 'false' } });
});
afterAll(async () => {
  await service?.close();
  await redis?.close();
});

const PROMPTS = ['a red circle on a blue background', 'a green square on a white background', 'a yellow triangle on a black background', 'a blue circle on a red background'];

async function submit(key: string, i: number, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
    method: 'POST',
    headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
    body: JSON.stringify({ text_prompts: [{ text: PROMPTS[i] }], steps: 12, seed: 1000 + i, ...extra }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

const job = async (key: string, id: string) => (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json() as Promise<any>;

async function finished(key: string, ids: string[]): Promise<any[]> {
  return waitFor(async () => {
    const jobs = await Promise.all(ids.map((id) => job(key, id)));
    return jobs.every((j) => ['succeeded', 'failed', 'canceled'].includes(j.status) && j.credits_charged !== null) && jobs;
  }, 'the jobs to finish', 60_000);
}

async function artifacts(jobs: any[]): Promise<Buffer[]> {
  return Promise.all(jobs.map(async (j) => Buffer.from(await (await fetch(j.artifacts[0].url)).arrayBuffer())));
}

async function metric(worker: TestWorker, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${worker.healthPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{engine="tiny-sd"}`) || l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Queues the jobs while no worker runs, then starts the worker, so they wait together. */
async function runWith(env: Record<string, string>, key: string, extra: (i: number) => Record<string, unknown> = () => ({})) {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await submit(key, i, extra(i)));
  const worker = await startTestWorker(service, { ENGINES: 'tiny-sd', ...env });
  try {
    return { ids, jobs: await finished(key, ids), worker, batches: await metric(worker, 'sdq_worker_batch_jobs_count'), batchedJobs: await metric(worker, 'sdq_worker_batch_jobs_sum') };
  } finally {
    await worker.close();
  }
}

describe('batching compatible jobs', () => {
  it('four compatible jobs run as one batch, each with the bytes, progress and charge it gets unbatched', async () => {
    const key = await accountWith(service, 'batching', 100);
    const batched = await runWith({ WORKER_BATCH_SIZE: '4', WORKER_BATCH_WINDOW_MS: '1000' }, key);
    expect(batched.batches).toBe(1);
    expect(batched.batchedJobs).toBe(4);
    const alone = await runWith({}, key);
    expect(alone.batches).toBe(0); // no batcher at all
    expect(batched.jobs.map((j) => j.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    const [a, b] = [await artifacts(batched.jobs), await artifacts(alone.jobs)];
    for (let i = 0; i < 4; i++) expect(a[i].equals(b[i]), `job ${i}`).toBe(true);
    // different prompts: different images
    expect(new Set(a.map((x) => x.toString('base64'))).size).toBe(4);
    for (const [i, j] of batched.jobs.entries()) {
      expect(j.progress).toEqual({ step: 12, steps: 12 });
      expect(j.credits_charged).toBe(alone.jobs[i].credits_charged);
      expect(j.credits_charged).toBeGreaterThan(0);
    }
  });

  it('jobs of another size or step count are not batched together', async () => {
    const key = await accountWith(service, 'mixed', 100);
    const run = await runWith({ WORKER_BATCH_SIZE: '4', WORKER_BATCH_WINDOW_MS: '1000' }, key, (i) => (i % 2 ? { steps: 10 } : {}));
    expect(run.jobs.every((j) => j.status === 'succeeded')).toBe(true);
    expect(run.batches).toBe(2);
    expect(run.batchedJobs).toBe(4);
  });

  it('a job canceled inside a batch is canceled and not charged; the others succeed', async () => {
    const key = await accountWith(service, 'cancel-in-batch', 100);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await submit(key, i, { steps: 50 }));
    const worker = await startTestWorker(service, { ENGINES: 'tiny-sd', WORKER_BATCH_SIZE: '4', WORKER_BATCH_WINDOW_MS: '1000' });
    try {
      await waitFor(async () => ((await job(key, ids[1])).progress?.step ?? 0) >= 2, 'the batch to be under way');
      const res = await fetch(`${service.url}/v1/jobs/${ids[1]}/cancel`, { method: 'POST', headers: authed(key) });
      expect(res.status).toBeLessThan(300);
      const jobs = await finished(key, ids);
      expect(jobs.map((j) => j.status)).toEqual(['succeeded', 'canceled', 'succeeded']);
      expect(jobs[1].credits_charged).toBe(0);
      expect(jobs[0].credits_charged).toBeGreaterThan(0);
      expect(await metric(worker, 'sdq_worker_batch_jobs_sum')).toBe(3);
    } finally {
      await worker.close();
    }
  });
});
