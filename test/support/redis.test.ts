/**
 * A test file's Redis keys go when it closes: every key its prefix starts, including the prefixes tests
 * derive from it (`<prefix>r` for a second deployment) and Cluster's hash-tagged `{<prefix>}:` form,
 * and no one else's.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startTestRedis } from './redis';

describe('startTestRedis', () => {
  it("removes every key of its prefix, in each form, and leaves other keys alone", async () => {
    const redis = await startTestRedis();
    const client = new Redis(redis.url);
    try {
      const mine = [`${redis.prefix}:job:1`, `${redis.prefix}r:bull:engine.tiny-sd:meta`, `${redis.prefix}g:x`, `{${redis.prefix}}:engines`, `{${redis.prefix}h}:y`];
      const other = `keep-${redis.prefix}:not-mine`;
      for (const key of [...mine, other]) await client.set(key, '1');
      await redis.removeKeys();
      for (const key of mine) expect(await client.exists(key), key).toBe(0);
      expect(await client.exists(other)).toBe(1);
      await client.del(other);
    } finally {
      client.disconnect();
      await redis.close();
    }
  });
});
