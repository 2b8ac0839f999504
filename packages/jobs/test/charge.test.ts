/**
 * The charge's rule (charge.ts) against real credit scripts: what each end does to a hold, that the first
 * close wins whoever reports, and the reconciler for ends nobody reported.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreditsService } from '@sdq/credits';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { holdFate, JobCharge } from '../src/charge';

let redis: TestRedis;
let client: Redis;
let credits: CreditsService;
let charge: JobCharge;
let clock = Date.parse('2025-01-01T00:00:00Z');
let n = 0;
const account = () => `acct_${++n}`;
const job = () => `job_${++n}`;
const COST = 200_053;
const settled: number[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  credits = new CreditsService(client, { prefix: `${redis.prefix}:charge`, now: () => clock });
  charge = new JobCharge({ credits, logger: pino({ level: 'silent' }), settled: { inc: (v) => settled.push(v) }, now: () => clock });
});
afterAll(async () => {
  client?.disconnect();
  await redis?.close();
});

describe('the rule', () => {
  it('settles a success, releases every other end with its reason, keeps an unfinished job', () => {
    expect(holdFate('succeeded')).toEqual({ action: 'settle', filtered: 0 });
    expect(holdFate('succeeded', false, 2)).toEqual({ action: 'settle', filtered: 2 });
    expect(holdFate('failed')).toEqual({ action: 'release', reason: 'failed' });
    expect(holdFate('failed', true)).toEqual({ action: 'release', reason: 'job_gone' });
    expect(holdFate('canceled')).toEqual({ action: 'release', reason: 'canceled' });
    expect(holdFate('queued')).toEqual({ action: 'keep' });
    expect(holdFate('running')).toEqual({ action: 'keep' });
  });

  it('the first report wins: a release after a settle, or a settle after a release, changes nothing', async () => {
    const acct = account();
    await credits.grant(acct, 1_000_000, 'test');
    const [won, lost] = [job(), job()];
    await credits.reserve(acct, won, COST);
    await credits.reserve(acct, lost, COST);
    expect(await charge.succeeded(won)).toEqual({ status: 'settled', charged: COST });
    expect(settled).toEqual([COST / 1_000_000]);
    expect(await charge.released(won, 'canceled')).toEqual({ status: 'already_settled', charged: COST });
    expect(await charge.released(lost, 'canceled')).toMatchObject({ status: 'released', amount: COST });
    expect(await charge.succeeded(lost)).toEqual({ status: 'already_released', amount: COST });
    expect(await charge.apply(lost, { action: 'keep' })).toBeUndefined();
    expect(settled).toHaveLength(1);
    expect(await credits.balance(acct)).toBe(1_000_000 - COST);
    expect(await credits.hold(lost)).toMatchObject({ state: 'released', reason: 'canceled' });
  });
});

describe('the reconciler', () => {
  it('releases holds whose job is gone once they are older than the grace period', async () => {
    const acct = account();
    await credits.grant(acct, 10_000_000, 'test');
    const [alive, gone, young] = [job(), job(), job()];
    const start = clock;
    await credits.reserve(acct, alive, COST);
    await credits.reserve(acct, gone, COST);
    clock = start + 4 * 60_000;
    await credits.reserve(acct, young, COST);
    clock = start + 6 * 60_000;

    const fate = async (hold: { job_id: string }) => (hold.job_id === alive ? { action: 'keep' as const } : { action: 'release' as const, reason: 'job_gone' as const });
    const first = await charge.reconcile(fate, { graceMs: 5 * 60_000 });
    expect(first.released).toEqual([gone]);
    expect(first.settled).toEqual([]);
    expect(await credits.hold(gone)).toMatchObject({ state: 'released', reason: 'job_gone' });
    expect(await credits.hold(young)).toMatchObject({ state: 'held' });

    clock = start + 10 * 60_000;
    expect((await charge.reconcile(fate, { graceMs: 5 * 60_000 })).released).toEqual([young]);
    expect(await credits.hold(alive)).toMatchObject({ state: 'held' });
    expect(await credits.balance(acct)).toBe(10_000_000 - COST);
    await charge.released(alive, 'failed');
  });

  it('reconciles holds whose job ended unnoticed: settles the succeeded, releases the failed', async () => {
    const acct = account();
    await credits.grant(acct, 10_000_000, 'test');
    const [done, failed, running] = [job(), job(), job()];
    for (const id of [done, failed, running]) await credits.reserve(acct, id, COST);
    clock += 10 * 60_000;
    const result = await charge.reconcile(async (hold) => {
      if (hold.job_id === done) return holdFate('succeeded');
      if (hold.job_id === failed) return holdFate('failed');
      return holdFate('running');
    });
    expect(result.checked).toBe(3);
    expect(result.settled).toEqual([done]);
    expect(result.released).toEqual([failed]);
    expect(await credits.balance(acct)).toBe(10_000_000 - 2 * COST);
    expect(await credits.hold(failed)).toMatchObject({ state: 'released', reason: 'failed' });
    await charge.succeeded(running);
  });
});

describe('one owner', () => {
  it('no code but charge.ts closes a hold (settle and release are the credit scripts)', async () => {
    const { readdirSync, readFileSync, statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = join(import.meta.dirname, '../../..');
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts')) files.push(path);
      }
    };
    for (const top of ['apps', 'packages']) for (const pkg of readdirSync(join(root, top))) {
      const src = join(root, top, pkg, 'src');
      if (pkg !== 'credits' && statSync(join(root, top, pkg)).isDirectory() && readdirSync(join(root, top, pkg)).includes('src')) walk(src);
    }
    expect(files.length).toBeGreaterThan(50);
    const closers = files.filter((f) => /\.\s*(settle|release)\(\s*(jobId|id\b|record\.id|job\.id|hold\.job_id)/.test(readFileSync(f, 'utf8')));
    expect(closers.map((f) => f.slice(root.length + 1))).toEqual(['packages/jobs/src/charge.ts']);
  });
});
