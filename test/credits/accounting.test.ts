/**
 * Balance arithmetic with real workers (child processes), real tiny-sd and real Redis: success charges
 * the price once; failure after the last retry, cancellation (queued and running) give it all back; a
 * worker SIGKILLed mid-job (the job runs twice) or right as it finishes, and duplicate settles, still
 * charge exactly once. After each, the balance is exact and the books verify; `npx sdq ledger verify`
 * says so too, and fails on books that do not add up.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { type ChildWorker, readEvents, ROOT, type Service, spawnWorker, startService, waitFor } from '../e2e/support';
import { balance, Books, call, createAccount, getJob, micro, type TestAccount } from './support';

const run = promisify(execFile);
/** tiny-sd, 128x128, 10 steps: 0.2 x 10 / 30, rounded to the micro-credit. */
const COST_10_STEPS = 0.066667;

let redis: TestRedis;
let service: Service;
let books: Books;
const workers: ChildWorker[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  // The sweeper (and its reconciler) every second, so a hold nobody closed is seen quickly.
  service = await startService(redis, { env: { SWEEP_INTERVAL: '1' } });
  books = new Books(redis.url, redis.prefix);
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  books?.close();
  await service?.close();
  await redis?.close();
});

async function worker(env: Record<string, string> = {}): Promise<ChildWorker> {
  const w = spawnWorker(service, { ENGINES: 'tiny-sd', ...env });
  workers.push(w);
  await w.ready;
  return w;
}

async function submit(account: TestAccount, body: Record<string, unknown> = {}, headers: Record<string, string> = { prefer: 'respond-async' }) {
  const res = await call(service, account.api_key, '/v1/generation/tiny-sd/text-to-image', {
    method: 'POST',
    headers,
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 7, ...body }),
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
  return (await res.json()) as { id: string; status: string; credits_charged: number | null; urls: { events: string } };
}

async function finished(account: TestAccount, id: string, timeoutMs = 60_000) {
  return waitFor(async () => {
    const job = await getJob(service, account.api_key, id);
    return ['succeeded', 'failed', 'canceled'].includes(job.status) && job;
  }, `job ${id} to finish`, timeoutMs);
}

/** Every hold closed, the books proven, and the account's balance exactly `expected`. */
async function expectBooks(account: TestAccount, expected: number) {
  const report = await books.settled();
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
  expect(micro(await balance(service, account.api_key))).toBe(micro(expected));
}

/** The hold states of an account's jobs, from its own ledger. */
async function ledgerTypes(account: TestAccount): Promise<string[]> {
  const page = await (await call(service, account.api_key, '/v1/user/ledger?limit=100')).json();
  return page.data.map((e: { type: string }) => e.type).reverse();
}

describe('balance arithmetic', () => {
  it('success: the price is held, then settled; the job says what it cost', async () => {
    await worker();
    const alice = await createAccount(service, { credits: 1 });
    const job = await submit(alice, {}, { prefer: 'wait=30' });
    expect(job.status).toBe('succeeded');
    await expectBooks(alice, 1 - COST_10_STEPS);
    expect((await getJob(service, alice.api_key, job.id)).credits_charged).toBe(COST_10_STEPS);
    expect(await ledgerTypes(alice)).toEqual(['grant', 'hold', 'settle']);
  });

  it('a duplicate settle (or a late release) changes nothing', async () => {
    const bob = await createAccount(service, { credits: 1 });
    const job = await submit(bob, {}, { prefer: 'wait=30' });
    await expectBooks(bob, 1 - COST_10_STEPS);
    expect(await books.credits.settle(job.id)).toEqual({ status: 'already_settled', charged: micro(COST_10_STEPS) });
    expect(await books.credits.settle(job.id)).toMatchObject({ status: 'already_settled' });
    expect(await books.credits.release(job.id, 'failed')).toMatchObject({ status: 'already_settled' });
    await expectBooks(bob, 1 - COST_10_STEPS);
    expect(await ledgerTypes(bob)).toEqual(['grant', 'hold', 'settle']);
  });

  it('cancellation, queued and running: everything comes back', async () => {
    const carol = await createAccount(service, { credits: 3 });
    const running = await submit(carol, { steps: 150, samples: 2 });
    const queued = await submit(carol);
    // Both held while open.
    // 150 steps: 1.0 per image, 2 images; and 0.066667.
    expect(micro(await balance(service, carol.api_key))).toBe(micro(3) - micro(2) - micro(COST_10_STEPS));
    await readEvents(running.urls.events, carol.api_key, (e) => e.event === 'progress' && e.data.step >= 2);
    const q = await (await call(service, carol.api_key, `/v1/jobs/${queued.id}/cancel`, { method: 'POST' })).json();
    expect(q.status).toBe('canceled');
    expect(q.credits_charged).toBe(0);
    expect((await call(service, carol.api_key, `/v1/jobs/${running.id}/cancel`, { method: 'POST' })).status).toBe(202);
    expect((await finished(carol, running.id)).status).toBe('canceled');
    await expectBooks(carol, 3);
    expect((await getJob(service, carol.api_key, running.id)).credits_charged).toBe(0);
    expect(await ledgerTypes(carol)).toEqual(['grant', 'hold', 'hold', 'release', 'release']);
  });

  it('a worker SIGKILLed mid-job: the job runs again elsewhere and is charged once', async () => {
    const dave = await createAccount(service, { credits: 5 });
    // Only one worker takes the job; a second comes up after the kill.
    await Promise.all(workers.splice(0).map((w) => w.kill('SIGKILL')));
    const first = await worker();
    const job = await submit(dave, { steps: 120 });
    await readEvents(job.urls.events, dave.api_key, (e) => e.event === 'progress' && e.data.step >= 3);
    await first.kill('SIGKILL');
    const second = await worker();
    expect((await finished(dave, job.id, 90_000)).status).toBe('succeeded');
    const ranOn = (w: ChildWorker) => w.lines.some((l) => l.includes('"job started"') && l.includes(job.id));
    expect([ranOn(first), ranOn(second)]).toEqual([true, true]);
    await expectBooks(dave, 5 - 0.8);
    expect(await ledgerTypes(dave)).toEqual(['grant', 'hold', 'settle']);
  });

  it('a worker SIGKILLed the moment it finishes a job: still charged exactly once', async () => {
    const erin = await createAccount(service, { credits: 1 });
    const w = workers[workers.length - 1];
    const job = await submit(erin);
    // Killed on its own "job succeeded" line: before or after BullMQ records the completion, either way
    // someone else (the API, the reconciler, or a rerun on a new worker) closes the hold once.
    await waitFor(async () => w.lines.some((l) => l.includes('"job succeeded"') && l.includes(job.id)), 'the job to succeed', 30_000);
    await w.kill('SIGKILL');
    await worker();
    expect((await finished(erin, job.id, 60_000)).status).toBe('succeeded');
    await expectBooks(erin, 1 - COST_10_STEPS);
    expect(await ledgerTypes(erin)).toEqual(['grant', 'hold', 'settle']);
  });

  it('failure after the last retry (the worker cannot write to storage): released in full', async () => {
    const frank = await createAccount(service, { credits: 1 });
    // A worker whose artifact folder cannot exist (its parent is a device): every upload fails.
    await Promise.all(workers.splice(0).map((w) => w.kill('SIGKILL')));
    const broken = await worker({ ARTIFACTS_DIR: '/dev/null/artifacts' });
    const job = await submit(frank);
    const done = await finished(frank, job.id, 60_000);
    expect(done.status).toBe('failed');
    expect(broken.lines.filter((l) => l.includes('"job attempt failed"') && l.includes(job.id))).toHaveLength(3);
    await expectBooks(frank, 1);
    expect((await getJob(service, frank.api_key, job.id)).credits_charged).toBe(0);
    expect(await ledgerTypes(frank)).toEqual(['grant', 'hold', 'release']);
  });
});

describe('npx sdq ledger verify', () => {
  const sdq = (...args: string[]) =>
    run(process.execPath, [join(ROOT, 'apps/api/bin/sdq.js'), ...args], { env: { PATH: process.env.PATH, REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix }, cwd: ROOT });

  it('proves the books above, and fails naming the account when a balance does not match its ledger', async () => {
    const ok = await sdq('ledger', 'verify');
    expect(ok.stdout).toMatch(/^ok: \d+ accounts, \d+ ledger entries, 0 open holds/);
    const victim = await createAccount(service, { credits: 3 });
    // A write that bypasses the scripts: the balance no longer equals the ledger's sum.
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    await raw.incrby(books.credits.keys.balance(victim.id), 1_000_000);
    raw.disconnect();
    const failed = await sdq('ledger', 'verify').then(
      () => undefined,
      (err: { code: number; stdout: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stdout).toContain(`account ${victim.id}: balance 4 != ledger sum 3`);
  });
});
