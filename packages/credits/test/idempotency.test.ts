import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashBody, IdempotencyStore, InvalidIdempotencyKeyError } from '../src/index';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

let redis: TestRedis;
let client: Redis;
let store: IdempotencyStore;
let n = 0;
const key = () => `key-${++n}`;
const ACCT = 'acct_1';
const body = hashBody({ text_prompts: [{ text: 'a red circle' }], steps: 30 });

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  store = new IdempotencyStore(client, { prefix: redis.prefix });
});

afterAll(async () => {
  client.disconnect();
  await redis.close();
});

describe('IdempotencyStore', () => {
  it('gives the first request the key, then answers the same body with its job', async () => {
    const k = key();
    const first = await store.begin(ACCT, k, body);
    expect(first.status).toBe('new');
    expect(await store.begin(ACCT, k, body)).toEqual({ status: 'in_progress' });
    expect(await store.complete(ACCT, k, 'job-1', (first as { token: string }).token)).toBe(true);
    expect(await store.begin(ACCT, k, body)).toEqual({ status: 'done', job_id: 'job-1' });
    expect(await store.begin(ACCT, k, body)).toEqual({ status: 'done', job_id: 'job-1' });
  });

  it('refuses the same key with another body, during and after the first request', async () => {
    const k = key();
    const first = await store.begin(ACCT, k, body);
    const other = hashBody({ text_prompts: [{ text: 'a blue square' }], steps: 30 });
    expect(await store.begin(ACCT, k, other)).toEqual({ status: 'mismatch' });
    await store.complete(ACCT, k, 'job-2', (first as { token: string }).token);
    expect(await store.begin(ACCT, k, other)).toEqual({ status: 'mismatch' });
  });

  it('keeps keys apart per account', async () => {
    const k = key();
    expect((await store.begin('acct_a', k, body)).status).toBe('new');
    expect((await store.begin('acct_b', k, body)).status).toBe('new');
  });

  it('gives exactly one of many simultaneous requests the key', async () => {
    const k = key();
    const results = await Promise.all(Array.from({ length: 20 }, () => store.begin(ACCT, k, body)));
    expect(results.filter((r) => r.status === 'new')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'in_progress')).toHaveLength(19);
  });

  it('lets a retry wait for the first request to finish', async () => {
    const k = key();
    const first = (await store.begin(ACCT, k, body)) as { token: string };
    setTimeout(() => void store.complete(ACCT, k, 'job-3', first.token), 100);
    const started = Date.now();
    expect(await store.begin(ACCT, k, body, { waitMs: 2000, pollMs: 20 })).toEqual({ status: 'done', job_id: 'job-3' });
    expect(Date.now() - started).toBeLessThan(1000);
    // Waiting in vain ends with in_progress.
    const k2 = key();
    await store.begin(ACCT, k2, body);
    expect(await store.begin(ACCT, k2, body, { waitMs: 100, pollMs: 20 })).toEqual({ status: 'in_progress' });
  });

  it('frees the key when the first request aborts, and only for its owner', async () => {
    const k = key();
    const first = (await store.begin(ACCT, k, body)) as { token: string };
    expect(await store.abort(ACCT, k, 'not-the-token')).toBe(false);
    expect(await store.complete(ACCT, k, 'job-x', 'not-the-token')).toBe(false);
    expect(await store.abort(ACCT, k, first.token)).toBe(true);
    const second = await store.begin(ACCT, k, body);
    expect(second.status).toBe('new');
    // The first request's late complete cannot take over the second's claim.
    expect(await store.complete(ACCT, k, 'job-late', first.token)).toBe(false);
  });

  it('expires a claim whose request died, and a completed key after its TTL', async () => {
    const short = new IdempotencyStore(client, { prefix: redis.prefix, pendingTtlMs: 100, ttlMs: 200 });
    const k = key();
    await short.begin(ACCT, k, body);
    await new Promise((r) => setTimeout(r, 150));
    const again = (await short.begin(ACCT, k, body)) as { status: string; token: string };
    expect(again.status).toBe('new');
    await short.complete(ACCT, k, 'job-4', again.token);
    expect(await short.begin(ACCT, k, body)).toEqual({ status: 'done', job_id: 'job-4' });
    await new Promise((r) => setTimeout(r, 250));
    expect((await short.begin(ACCT, k, body)).status).toBe('new');
  });

  it('uses a 24 h lifetime by default and stores the key hashed', async () => {
    const k = `secret-looking-key-${++n}`;
    const first = (await store.begin(ACCT, k, body)) as { token: string };
    await store.complete(ACCT, k, 'job-5', first.token);
    const all = await client.keys(`${redis.prefix}:idempotency:*`);
    expect(all.every((name) => /:[0-9a-f]{64}$/.test(name))).toBe(true);
    expect(all.some((name) => name.includes('secret-looking-key'))).toBe(false);
    const ttls = await Promise.all(all.map((name) => client.pttl(name)));
    expect(Math.max(...ttls)).toBeGreaterThan(24 * 3600_000 - 10_000);
    expect(Math.max(...ttls)).toBeLessThanOrEqual(24 * 3600_000);
  });

  it('refuses empty and over-long keys', async () => {
    await expect(store.begin(ACCT, '', body)).rejects.toThrow(InvalidIdempotencyKeyError);
    await expect(store.begin(ACCT, 'x'.repeat(256), body)).rejects.toThrow('Idempotency-Key must be 1 to 255 characters (got 256)');
  });
});

describe('hashBody', () => {
  it('ignores key order and undefined fields, and sees every byte of a file', () => {
    expect(hashBody({ a: 1, b: [1, 2], c: undefined })).toBe(hashBody({ b: [1, 2], a: 1 }));
    expect(hashBody({ a: 1 })).not.toBe(hashBody({ a: '1' }));
    expect(hashBody({ image: Buffer.from([1, 2, 3]) })).not.toBe(hashBody({ image: Buffer.from([1, 2, 4]) }));
    expect(hashBody({ a: [1, 2] })).not.toBe(hashBody({ a: [[1], 2] }));
  });
});
