import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreditsInputError, CreditsService, PriceTable } from '../src/index';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

let redis: TestRedis;
let client: Redis;
let credits: CreditsService;
let clock = Date.parse('2025-01-01T00:00:00Z');
let n = 0;
/** A fresh account id per test, so tests share the file's prefix without sharing state. */
const account = () => `acct_${++n}`;
const job = () => `job_${++n}`;

const prices = PriceTable.load();
const SD_512 = prices.generation('stable-diffusion-v1-5', { width: 512, height: 512, steps: 30 }).total; // 200,053

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  credits = new CreditsService(client, { prefix: redis.prefix, now: () => clock });
});

afterAll(async () => {
  client.disconnect();
  await redis.close();
});

describe('reserve, settle, release', () => {
  it('holds the cost, then settles it once: the charge stands, duplicates change nothing', async () => {
    const acct = account();
    const id = job();
    expect(await credits.grant(acct, 1_000_000, 'test')).toMatchObject({ status: 'ok', balance: 1_000_000 });

    const reserved = await credits.reserve(acct, id, SD_512);
    expect(reserved).toMatchObject({ ok: true, status: 'reserved', balance: 799_947, hold: { job_id: id, account_id: acct, amount: SD_512, state: 'held' } });
    expect(await credits.balance(acct)).toBe(799_947);
    expect(await credits.activeJobs(acct)).toBe(1);
    expect(await credits.charged(id)).toBeNull();

    expect(await credits.settle(id)).toEqual({ status: 'settled', charged: SD_512 });
    expect(await credits.settle(id)).toEqual({ status: 'already_settled', charged: SD_512 });
    expect(await credits.release(id, 'failed')).toEqual({ status: 'already_settled', charged: SD_512 });
    expect(await credits.balance(acct)).toBe(799_947);
    expect(await credits.activeJobs(acct)).toBe(0);
    expect(await credits.charged(id)).toBe(SD_512);
    expect(await credits.hold(id)).toMatchObject({ state: 'settled', amount: SD_512 });

    const { entries } = await credits.ledger(acct);
    expect(entries.map(({ type, amount, job_id, charged }) => ({ type, amount, job_id, charged }))).toEqual([
      { type: 'settle', amount: 0, job_id: id, charged: SD_512 },
      { type: 'hold', amount: -SD_512, job_id: id, charged: undefined },
      { type: 'grant', amount: 1_000_000, job_id: undefined, charged: undefined },
    ]);
    expect(entries[2].reason).toBe('test');
    expect(entries[0].created_at).toBe(new Date(clock).toISOString());
  });

  it('a hold taken with a refund per image gives back its filtered images at settle, once, and the ledger says why', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    await credits.reserve(acct, id, 300_000, { refundPerImage: 100_000 });
    expect(await credits.settle(id, { filtered: 2 })).toEqual({ status: 'settled', charged: 100_000 });
    expect(await credits.settle(id, { filtered: 3 })).toEqual({ status: 'already_settled', charged: 100_000 });
    expect(await credits.balance(acct)).toBe(900_000);
    expect(await credits.charged(id)).toBe(100_000);
    const { entries } = await credits.ledger(acct);
    expect(entries.slice(0, 3).map(({ type, amount, reason, charged }) => ({ type, amount, reason, charged }))).toEqual([
      { type: 'release', amount: 200_000, reason: 'content_filtered', charged: undefined },
      { type: 'settle', amount: 0, reason: undefined, charged: 100_000 },
      { type: 'hold', amount: -300_000, reason: undefined, charged: undefined },
    ]);
    // more filtered than held gives back what was held, never more; a hold without a refund gives nothing
    const all = job();
    await credits.reserve(acct, all, 50_000, { refundPerImage: 100_000 });
    expect(await credits.settle(all, { filtered: 1 })).toEqual({ status: 'settled', charged: 0 });
    const none = job();
    await credits.reserve(acct, none, 50_000);
    expect(await credits.settle(none, { filtered: 4 })).toEqual({ status: 'settled', charged: 50_000 });
    expect(await credits.balance(acct)).toBe(850_000);
    // the ledger's own check knows a refund from a second close
    expect((await credits.verify()).problems.filter((p) => p.account_id === acct)).toEqual([]);
  });

  it('releases in full once: nothing is charged, a settle afterwards changes nothing', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    await credits.reserve(acct, id, SD_512);

    expect(await credits.release(id, 'failed')).toEqual({ status: 'released', amount: SD_512, balance: 1_000_000 });
    expect(await credits.release(id, 'failed')).toEqual({ status: 'already_released', amount: SD_512 });
    expect(await credits.settle(id)).toEqual({ status: 'already_released', amount: SD_512 });
    expect(await credits.balance(acct)).toBe(1_000_000);
    expect(await credits.charged(id)).toBe(0);
    expect(await credits.hold(id)).toMatchObject({ state: 'released', reason: 'failed' });
    const { entries } = await credits.ledger(acct);
    expect(entries.map((e) => [e.type, e.amount, e.reason])).toEqual([
      ['release', SD_512, 'failed'],
      ['hold', -SD_512, undefined],
      ['grant', 1_000_000, 'test'],
    ]);
  });

  it('treats a second reserve for the same job as a no-op returning the existing hold', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    expect((await credits.reserve(acct, id, SD_512)).status).toBe('reserved');
    expect(await credits.reserve(acct, id, SD_512)).toMatchObject({ ok: true, status: 'existing', hold: { amount: SD_512, state: 'held' } });
    expect(await credits.balance(acct)).toBe(1_000_000 - SD_512);
    await credits.settle(id);
    // Even once closed, and even with another amount: the job was reserved once.
    expect(await credits.reserve(acct, id, 5)).toMatchObject({ ok: true, status: 'existing', hold: { amount: SD_512, state: 'settled' } });
    expect(await credits.balance(acct)).toBe(1_000_000 - SD_512);
    expect((await credits.ledger(acct)).entries.filter((e) => e.type === 'hold')).toHaveLength(1);
  });

  it('closes a hold exactly once when settles and releases race', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    await credits.reserve(acct, id, SD_512);
    const clients = Array.from({ length: 4 }, () => new Redis(redis.url));
    try {
      const services = clients.map((c) => new CreditsService(c, { prefix: redis.prefix }));
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? services[i % 4].settle(id) : services[i % 4].release(id, 'canceled'))),
      );
      const winners = results.filter((r) => r.status === 'settled' || r.status === 'released');
      expect(winners).toHaveLength(1);
      const expected = winners[0].status === 'settled' ? 1_000_000 - SD_512 : 1_000_000;
      expect(await credits.balance(acct)).toBe(expected);
    } finally {
      clients.forEach((c) => c.disconnect());
    }
  });

  it('reports holds it does not know', async () => {
    expect(await credits.settle('no-such-job')).toEqual({ status: 'not_found' });
    expect(await credits.release('no-such-job', 'failed')).toEqual({ status: 'not_found' });
    expect(await credits.hold('no-such-job')).toBeUndefined();
    expect(await credits.charged('no-such-job')).toBeNull();
  });

  it('refuses a cost over the balance, saying the cost and the balance, and changes nothing', async () => {
    const acct = account();
    await credits.grant(acct, 150_000, 'test');
    const result = await credits.reserve(acct, job(), SD_512);
    expect(result).toEqual({
      ok: false,
      status: 'insufficient_balance',
      cost: SD_512,
      balance: 150_000,
      message: 'this request costs 0.200053 credits and the balance is 0.15',
    });
    expect(await credits.balance(acct)).toBe(150_000);
    expect(await credits.activeJobs(acct)).toBe(0);
    expect((await credits.ledger(acct)).entries).toHaveLength(1);
    // An account that has never had credits has none.
    expect(await credits.reserve(account(), job(), 1)).toMatchObject({ ok: false, status: 'insufficient_balance', balance: 0 });
  });

  it('limits the jobs an account has queued or running', async () => {
    const acct = account();
    await credits.grant(acct, 10_000_000, 'test');
    const [a, b, c] = [job(), job(), job()];
    expect((await credits.reserve(acct, a, SD_512, { maxActive: 2 })).ok).toBe(true);
    expect((await credits.reserve(acct, b, SD_512, { maxActive: 2 })).ok).toBe(true);
    expect(await credits.reserve(acct, c, SD_512, { maxActive: 2 })).toEqual({
      ok: false,
      status: 'too_many_active_jobs',
      active: 2,
      max_active: 2,
      message: 'the account has 2 jobs queued or running, the most allowed at once (2)',
    });
    expect(await credits.balance(acct)).toBe(10_000_000 - 2 * SD_512);
    // An existing hold is returned even at the limit: it is the same job, not a new one.
    expect((await credits.reserve(acct, b, SD_512, { maxActive: 2 })).status).toBe('existing');
    await credits.settle(a);
    expect((await credits.reserve(acct, c, SD_512, { maxActive: 2 })).status).toBe('reserved');
    // 0 = no limit.
    expect((await credits.reserve(acct, job(), SD_512, { maxActive: 0 })).status).toBe('reserved');
  });

  it('refuses bad input before touching Redis', async () => {
    await expect(credits.reserve('acct', 'job', 0)).rejects.toThrow(CreditsInputError);
    await expect(credits.reserve('acct', 'job', 1.5)).rejects.toThrow('amount must be a positive integer number of micro-credits (got 1.5)');
    await expect(credits.reserve('a:b', 'job', 1)).rejects.toThrow("account id must be 1 to 200 characters without spaces, ':'");
    await expect(credits.release('job', '')).rejects.toThrow('reason must be 1 to 500 characters');
    await expect(credits.grant('acct', -1, 'x')).rejects.toThrow('positive');
    await expect(credits.adjust('acct', 0, 'x')).rejects.toThrow('must not be 0');
  });

  it('keeps a closed hold for a while, then lets it expire', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    await credits.reserve(acct, id, SD_512);
    expect(await client.ttl(credits.keys.hold(id))).toBe(-1);
    await credits.settle(id);
    const ttl = await client.ttl(credits.keys.hold(id));
    expect(ttl).toBeGreaterThan(7 * 24 * 3600 - 10);
    expect(ttl).toBeLessThanOrEqual(7 * 24 * 3600);
  });
});

describe('concurrency', () => {
  it('50 simultaneous reserves against a balance that covers 7: exactly 7 succeed', async () => {
    const acct = account();
    // Enough for 7 and one micro-credit short of 8.
    await credits.grant(acct, 8 * SD_512 - 1, 'test');
    const clients = Array.from({ length: 10 }, () => new Redis(redis.url));
    try {
      const services = clients.map((c) => new CreditsService(c, { prefix: redis.prefix }));
      await Promise.all(clients.map((c) => c.ping()));
      const jobs = Array.from({ length: 50 }, () => job());
      const results = await Promise.all(jobs.map((id, i) => services[i % services.length].reserve(acct, id, SD_512, { maxActive: 100 })));
      const ok = results.filter((r) => r.ok);
      const refused = results.filter((r) => !r.ok);
      expect(ok).toHaveLength(7);
      expect(refused).toHaveLength(43);
      expect(refused.every((r) => r.status === 'insufficient_balance')).toBe(true);
      expect(await credits.balance(acct)).toBe(SD_512 - 1);
      expect(await credits.activeJobs(acct)).toBe(7);

      // Settle some, release the others, twice over, concurrently.
      const held = jobs.filter((_, i) => results[i].ok);
      await Promise.all(held.flatMap((id, i) => [0, 1].map(() => (i < 4 ? credits.settle(id) : credits.release(id, 'canceled')))));
      expect(await credits.balance(acct)).toBe(SD_512 - 1 + 3 * SD_512);
      const report = await credits.verify();
      expect(report.problems.filter((p) => p.account_id === acct)).toEqual([]);
      expect(report.open_holds.filter((h) => h.account_id === acct)).toEqual([]);
    } finally {
      clients.forEach((c) => c.disconnect());
    }
  });
});

describe('grants and adjustments', () => {
  it('gives the starting grant once however often it is asked', async () => {
    const acct = account();
    expect(await credits.grantStarting(acct)).toMatchObject({ status: 'ok', balance: 25_000_000 });
    expect(await credits.grantStarting(acct)).toEqual({ status: 'duplicate', balance: 25_000_000 });
    expect(await credits.grantStarting(acct, 5_000_000)).toEqual({ status: 'duplicate', balance: 25_000_000 });
    expect((await credits.ledger(acct)).entries).toMatchObject([{ type: 'grant', amount: 25_000_000, reason: 'starting grant' }]);
  });

  it('makes a tagged grant once, and adjusts either way but never below zero', async () => {
    const acct = account();
    expect((await credits.grant(acct, 3_000_000, 'promo', { tag: 'req-1' })).status).toBe('ok');
    expect(await credits.grant(acct, 3_000_000, 'promo', { tag: 'req-1' })).toEqual({ status: 'duplicate', balance: 3_000_000 });
    expect(await credits.adjust(acct, -1_000_000, 'refund reversed')).toMatchObject({ status: 'ok', balance: 2_000_000 });
    expect(await credits.adjust(acct, -2_000_001, 'too much')).toEqual({ status: 'insufficient_balance', balance: 2_000_000 });
    expect(await credits.adjust(acct, 500_000, 'goodwill')).toMatchObject({ status: 'ok', balance: 2_500_000 });
    expect((await credits.ledger(acct)).entries.map((e) => [e.type, e.amount])).toEqual([
      ['adjust', 500_000],
      ['adjust', -1_000_000],
      ['grant', 3_000_000],
    ]);
  });
});

describe('the ledger', () => {
  it('pages newest first with a cursor', async () => {
    const acct = account();
    for (let i = 1; i <= 7; i++) await credits.grant(acct, i, `grant ${i}`);
    const reasons: string[] = [];
    const pages: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await credits.ledger(acct, { limit: 3, cursor });
      pages.push(page.entries.length);
      reasons.push(...page.entries.map((e) => e.reason!));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    expect(pages).toEqual([3, 3, 1]);
    expect(reasons).toEqual(['grant 7', 'grant 6', 'grant 5', 'grant 4', 'grant 3', 'grant 2', 'grant 1']);
    // A page that ends exactly at the last entry says there is no next page.
    expect((await credits.ledger(acct, { limit: 7 })).next_cursor).toBeNull();
    expect((await credits.ledger(account())).entries).toEqual([]);
  });

  it('refuses cursors and limits it did not make', async () => {
    await expect(credits.ledger('acct', { cursor: 'abc' })).rejects.toThrow('cursor: is not a cursor this ledger returned');
    await expect(credits.ledger('acct', { limit: 0 })).rejects.toThrow('limit must be an integer from 1 to 1000 (got 0)');
  });
});

describe('verify', () => {
  it('passes on honest books and reports a balance tampered with directly', async () => {
    const acct = account();
    const [a, b] = [job(), job()];
    await credits.grant(acct, 2_000_000, 'test');
    await credits.reserve(acct, a, SD_512);
    await credits.reserve(acct, b, SD_512);
    await credits.settle(a);
    let report = await credits.verify();
    expect(report.problems.filter((p) => p.account_id === acct)).toEqual([]);
    expect(report.open_holds.map((h) => h.job_id)).toContain(b);

    await client.incrby(credits.keys.balance(acct), 1_000_000);
    report = await credits.verify();
    expect(report.ok).toBe(false);
    const ledgerSum = 2_000_000 - 2 * SD_512;
    expect(report.problems).toContainEqual({ kind: 'balance_mismatch', account_id: acct, balance: ledgerSum + 1_000_000, ledger_sum: ledgerSum });
    await client.decrby(credits.keys.balance(acct), 1_000_000);
    report = await credits.verify();
    expect(report.problems.filter((p) => p.account_id === acct)).toEqual([]);
  });

  it('reports a hold both settled and released, a ghost balance and a stray open hold', async () => {
    const acct = account();
    const id = job();
    await credits.grant(acct, 1_000_000, 'test');
    await credits.reserve(acct, id, SD_512);
    await credits.settle(id);
    // A release written past the scripts, with its balance change, so only the hold check can see it.
    await client.xadd(credits.keys.ledger(acct), '*', 'type', 'release', 'amount', String(SD_512), 'job_id', id, 'reason', 'x', 'at', String(clock));
    await client.incrby(credits.keys.balance(acct), SD_512);
    await client.sadd(credits.keys.accountHolds(acct), 'stray-job');
    const ghost = account();
    await client.set(credits.keys.balance(ghost), '5');

    const report = await credits.verify();
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual({ kind: 'hold_settled_and_released', account_id: acct, job_id: id });
    expect(report.problems).toContainEqual({ kind: 'open_hold_mismatch', account_id: acct, job_id: 'stray-job', detail: 'in the open holds but not in the ledger' });
    expect(report.problems).toContainEqual({ kind: 'balance_mismatch', account_id: ghost, balance: 5, ledger_sum: 0 });

    // Leave the file's books honest for the other tests.
    await client.del(credits.keys.ledger(acct), credits.keys.balance(acct), credits.keys.accountHolds(acct), credits.keys.balance(ghost));
    await client.srem(credits.keys.ledgerAccounts, acct);
  });
});
