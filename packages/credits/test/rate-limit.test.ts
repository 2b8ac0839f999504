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
    // When the first answer came back: the oldest request was counted no later than that.
    let firstAnswered = Infinity;
    const results = await Promise.all(
      Array.from({ length: 150 }, () => limiter.hit('key_a').then((r) => ((firstAnswered = Math.min(firstAnswered, Date.now())), r))),
    );
    expect(results.every((r) => r.allowed)).toBe(true);
    expect(results.map((r) => (r.allowed ? r.remaining : -1)).sort((a, b) => a - b)).toEqual(Array.from({ length: 150 }, (_, i) => i));

    const sentAt = Date.now();
    const refused = await limiter.hit('key_a');
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    // The oldest request leaves the window 1.5 s after it was counted, which was before the first answer
    // came back, and this request was counted after it was sent: a bound no machine's load can break
    // (the few ms are the clocks' rounding), unlike one measured from before the burst was sent.
    expect(refused.retry_after_ms).toBeGreaterThan(0);
    expect(refused.retry_after_ms).toBeLessThanOrEqual(firstAnswered + 1500 - sentAt + 5);
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
