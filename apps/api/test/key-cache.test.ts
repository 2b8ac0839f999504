/**
 * The API's key cache: a valid key is looked up in Redis once per 5 s per API process, and a revocation
 * made anywhere (another API process here) takes effect at once in every process (a pub/sub message),
 * not when the cached entry runs out.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

let redis: TestRedis;
let a: TestApi;
let b: TestApi;
let probe: Redis;

beforeAll(async () => {
  redis = await startTestRedis();
  a = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  b = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  probe = new Redis(redis.url);
});
afterAll(async () => {
  probe?.disconnect();
  await a?.close();
  await b?.close();
  await redis?.close();
});

const balance = (api: TestApi, key: string) => fetch(`${api.url}/v1/user/balance`, { headers: { authorization: `Bearer ${key}` } });
/** Key lookups (GET <prefix>:keyhash:...) Redis receives while `fn` runs. */
async function lookups(fn: () => Promise<void>): Promise<number> {
  const monitor = await probe.monitor();
  let count = 0;
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toLowerCase() === 'get' && args[1]?.startsWith(`${redis.prefix}:keyhash:`)) count++;
  });
  await new Promise((r) => setTimeout(r, 50));
  await fn();
  await new Promise((r) => setTimeout(r, 50));
  monitor.disconnect();
  return count;
}

describe('the key cache', () => {
  it('looks a valid key up once, then serves it from memory', async () => {
    const { api_key: key } = await a.account('cached');
    await new Promise((r) => setTimeout(r, 200)); // both processes' subscriptions hold
    expect((await balance(b, key)).status).toBe(200);
    const n = await lookups(async () => {
      for (let i = 0; i < 20; i++) expect((await balance(b, key)).status).toBe(200);
    });
    expect(n).toBe(0);
  });

  it('an unknown key is looked up every time and refused', async () => {
    const n = await lookups(async () => {
      for (let i = 0; i < 3; i++) expect((await balance(b, 'sk-not-a-key')).status).toBe(401);
    });
    expect(n).toBe(3);
  });

  it('a key revoked through one API process is refused at once by another that had it cached', async () => {
    const { api_key: key, key_id: keyId } = await a.account('revoked');
    await new Promise((r) => setTimeout(r, 200));
    expect((await balance(b, key)).status).toBe(200);
    expect((await balance(b, key)).status).toBe(200); // cached now
    const res = await a.admin(`/v1/admin/keys/${keyId}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    await new Promise((r) => setTimeout(r, 50)); // the message's way through Redis
    expect((await balance(b, key)).status).toBe(401);
    expect((await balance(a, key)).status).toBe(401);
  });
});
