/**
 * Faults survived, with real parts (redis-server with its append-only file, the real worker and tiny-sd,
 * an S3 protocol server behind a proxy that can be cut):
 * - Redis restarted twice (AOF on, as docker-compose runs it) with 200 jobs queued, the second time while
 *   the worker is busy with them: none lost, each completed once with one set of artifacts, each
 *   charged once, and the ledger exact.
 * - Storage unreachable for FAULT_STORAGE_DOWN_MS (default 30 s): each job either succeeds (its retry came
 *   after storage returned) or fails and is refunded; no object belongs to no job; /readyz says so.
 * Each case prints its figures (the README quotes them).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { CreditsService } from '@sdq/credits';
import { startTestRedis, type TestRedis } from '../support/redis';
import { startTestS3, type TestS3 } from '../support/s3';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { accountWith, authed, type Service, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';

const STORAGE_DOWN_MS = Number(process.env.FAULT_STORAGE_DOWN_MS ?? 30_000);
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function submit(service: Service, key: string, seed: number): Promise<string> {
  const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
    method: 'POST',
    headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed }),
  });
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

const jobOf = async (service: Service, key: string, id: string) => (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as any;

async function allEnded(service: Service, owned: [string, string][], timeoutMs: number): Promise<any[]> {
  return waitFor(
    async () => {
      const jobs = await Promise.all(owned.map(([key, id]) => jobOf(service, key, id)));
      return jobs.every((j) => ['succeeded', 'failed', 'canceled'].includes(j.status) && j.credits_charged !== null) && jobs;
    },
    'every job to end',
    timeoutMs,
  );
}

async function ledgerOf(service: Service, key: string): Promise<{ type: string; job_id: string | null; amount: number }[]> {
  const entries: { type: string; job_id: string | null; amount: number }[] = [];
  for (let cursor: string | null = ''; cursor !== null; ) {
    const page = (await (await fetch(`${service.url}/v1/user/ledger?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: authed(key) })).json()) as { data: typeof entries; next_cursor: string | null };
    entries.push(...page.data);
    cursor = page.next_cursor;
  }
  return entries;
}

describe('Redis restarted with 200 jobs queued (AOF on)', () => {
  let redis: TestRedis;
  let service: Service;
  let worker: TestWorker;

  it('loses none, completes each once with one set of artifacts, charges each once, and the ledger is exact', async () => {
    redis = await startTestRedis({ private: true, aof: true });
    cleanups.push(() => redis.close());
    service = await startService(redis, { env: { MAX_ACTIVE_JOBS: '0', REQUIRE_WORKER: 'false' } });
    cleanups.push(() => service.close());
    const keys = await Promise.all([0, 1, 2, 3].map((i) => accountWith(service, `aof-${i}`, 1000)));
    const owned: [string, string][] = [];
    for (let i = 0; i < 200; i++) owned.push([keys[i % 4], await submit(service, keys[i % 4], 7000 + i)]);

    // 1. all 200 queued, nothing running: Redis's own shutdown, then the same data directory again
    const started = Date.now();
    await redis.stop('SIGTERM');
    await redis.restart();
    await waitFor(async () => (await fetch(`${service.url}/readyz`)).status === 200, 'the API to be ready again', 15_000);
    const firstOutage = Date.now() - started;
    const queued = await Promise.all(owned.map(([key, id]) => jobOf(service, key, id)));
    expect(queued.filter((j) => j.status === 'queued')).toHaveLength(200);

    // 2. again, while the worker (batching 4) is part-way through them
    worker = await startTestWorker(service, { ENGINES: 'tiny-sd', WORKER_BATCH_SIZE: '4' });
    cleanups.push(() => worker.close(1000));
    await waitFor(async () => worker.succeeded.length >= 20 || undefined, 'the worker to be under way', 60_000);
    await redis.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    await redis.restart();
    const jobs = await allEnded(service, owned, 180_000);

    expect(jobs.map((j) => j.status).filter((s) => s !== 'succeeded')).toEqual([]);
    expect(jobs.every((j) => j.artifacts.length === 1)).toBe(true);
    // one set of artifacts per job: exactly one object under each job's folder
    const dir = service.env.ARTIFACTS_DIR;
    for (const job of jobs) expect(readdirSync(join(dir, 'generations', job.id))).toHaveLength(1);
    // charged once each: one hold and one settle per job in its account's ledger, and nothing else
    for (const key of keys) {
      const entries = await ledgerOf(service, key);
      const mine = owned.filter(([k]) => k === key).map(([, id]) => id).sort();
      expect(entries.filter((e) => e.type === 'hold').map((e) => e.job_id).sort()).toEqual(mine);
      expect(entries.filter((e) => e.type === 'settle').map((e) => e.job_id).sort()).toEqual(mine);
      expect(entries.filter((e) => !['grant', 'hold', 'settle'].includes(e.type))).toEqual([]);
    }
    const client = new Redis(redis.url);
    try {
      const report = await new CreditsService(client, { prefix: redis.prefix }).verify();
      expect(report.problems).toEqual([]);
      expect(report.open_holds).toEqual([]);
    } finally {
      client.disconnect();
    }
    const runs = worker.succeeded.length;
    console.log(`faults/redis: 200 jobs; first restart (all queued) ${firstOutage} ms to ready; second restart after ${20}+ done; ${runs} successful runs for 200 jobs (${runs - 200} run again after the restart), 200 completed once, 200 settles`);
  }, 300_000);
});

describe(`storage unreachable for ${STORAGE_DOWN_MS / 1000} s`, () => {
  let s3: TestS3;
  let proxy: TcpProxy;

  it('each job succeeds after it returns or fails refunded; no orphaned object; /readyz tells', async () => {
    const redis = await startTestRedis();
    cleanups.push(() => redis.close());
    s3 = await startTestS3();
    cleanups.push(() => s3.close());
    proxy = await startTcpProxy(s3.endpoint);
    cleanups.push(() => proxy.close());
    const service = await startService(redis, { s3: { ...s3, endpoint: proxy.url }, env: { MAX_ACTIVE_JOBS: '0' } });
    cleanups.push(() => service.close());
    const worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    cleanups.push(() => worker.close(1000));
    const key = await accountWith(service, 'storage-outage', 1000);
    const owned: [string, string][] = [];
    const submitSome = async (n: number) => {
      for (let i = 0; i < n; i++) owned.push([key, await submit(service, key, 9000 + owned.length)]);
    };

    await submitSome(2);
    await proxy.cut();
    const cutAt = Date.now();
    await submitSome(4); // run during the outage: their attempts fail, retried with backoff, then fail
    await waitFor(async () => (await fetch(`${service.url}/readyz`)).status === 503, '/readyz to fail', 10_000);
    await new Promise((r) => setTimeout(r, Math.max(0, STORAGE_DOWN_MS - (Date.now() - cutAt) - 1500)));
    await submitSome(3); // their first attempt fails just before storage returns; a retry comes after
    await new Promise((r) => setTimeout(r, Math.max(0, STORAGE_DOWN_MS - (Date.now() - cutAt))));
    await proxy.restore();
    const downMs = Date.now() - cutAt;
    await submitSome(3);
    const jobs = await allEnded(service, owned, 120_000);
    await waitFor(async () => (await fetch(`${service.url}/readyz`)).status === 200, '/readyz to pass again', 15_000);

    const succeeded = jobs.filter((j) => j.status === 'succeeded');
    const failed = jobs.filter((j) => j.status === 'failed');
    expect(succeeded.length + failed.length).toBe(jobs.length);
    // the jobs before the cut and after the return succeed; so do some whose retry came after it
    expect(succeeded.length).toBeGreaterThanOrEqual(5);
    for (const job of succeeded) {
      expect(job.credits_charged).toBeGreaterThan(0);
      expect((await fetch(job.artifacts[0].url)).status).toBe(200);
    }
    for (const job of failed) {
      expect(job.credits_charged).toBe(0);
      expect(job.artifacts).toEqual([]);
    }
    // every object in the bucket is a succeeded job's artifact, and each of those is there
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.credentials });
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
      const objects = (listed.Contents ?? []).map((o) => o.Key!).filter((k) => !k.startsWith('.sdq'));
      const expected = succeeded.map((j) => `generations/${j.id}/0.png`);
      expect(objects.filter((k) => k.startsWith('generations/')).sort()).toEqual(expected.sort());
      expect(objects.filter((k) => k.startsWith('inputs/'))).toEqual([]);
    } finally {
      client.destroy();
    }
    const report = await new CreditsService(service.server.deps.store.redis, { prefix: redis.prefix }).verify();
    expect(report.problems).toEqual([]);
    console.log(`faults/storage: down ${downMs} ms; ${jobs.length} jobs: ${succeeded.length} succeeded, ${failed.length} failed and refunded; ${succeeded.length} objects in the bucket, none orphaned`);
  }, 300_000);
});
