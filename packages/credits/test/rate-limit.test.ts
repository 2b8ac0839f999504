import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/index';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

let redis: TestRedis;
let client: Redis;

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
});

afterAll(async () => {
  client.disconnect();
  await redis.close();
});

describe('RateLimiter', () => {
  it('defaults to Stability\'s 150 requests per 10 s', () => {
    const limiter = new RateLimiter(client, { prefix: redis.prefix });
    expect([limiter.limit, limiter.windowMs]).toEqual([150, 10_000]);
  });

  it('refuses the 151st request in the window with a sensible Retry-After, and allows again after it', async () => {
    const limiter = new RateLimiter(client, { prefix: redis.prefix, limit: 150, windowMs: 1500 });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 150 }, () => limiter.hit('key_a')));
    expect(results.every((r) => r.allowed)).toBe(true);
    expect(results.map((r) => (r.allowed ? r.remaining : -1)).sort((a, b) => a - b)).toEqual(Array.from({ length: 150 }, (_, i) => i));

    const refused = await limiter.hit('key_a');
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    // The oldest request leaves the window at most 1.5 s after it came.
    expect(refused.retry_after_ms).toBeGreaterThan(0);
    expect(refused.retry_after_ms).toBeLessThanOrEqual(1500 - (Date.now() - started) + 50);
    expect(refused.retry_after).toBe(Math.ceil(refused.retry_after_ms / 1000));
    // Another subject has its own window.
    expect((await limiter.hit('key_b')).allowed).toBe(true);

    await new Promise((r) => setTimeout(r, refused.retry_after_ms + 20));
    expect((await limiter.hit('key_a')).allowed).toBe(true);
  });

  it('slides: requests leave the window one by one, and refusals do not count', async () => {
    const limiter = new RateLimiter(client, { prefix: redis.prefix, limit: 2, windowMs: 1000 });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    expect((await limiter.hit('s')).allowed).toBe(true);
    await sleep(300);
    expect((await limiter.hit('s')).allowed).toBe(true);
    for (let i = 0; i < 5; i++) expect((await limiter.hit('s')).allowed).toBe(false);
    const refused = await limiter.hit('s');
    if (refused.allowed) throw new Error('expected a refusal');
    // The first request leaves about 700 ms from now; the second, 300 ms after it.
    expect(refused.retry_after_ms).toBeLessThanOrEqual(700);
    expect(refused.retry_after).toBe(1);
    await sleep(refused.retry_after_ms + 30);
    expect((await limiter.hit('s')).allowed).toBe(true);
    expect((await limiter.hit('s')).allowed).toBe(false);
  });

  it('refuses a nonsense configuration', () => {
    expect(() => new RateLimiter(client, { prefix: redis.prefix, limit: 0 })).toThrow('rate limiter limit must be a positive integer (got 0)');
  });
});
