/**
 * With a lent Redis (REDIS_URL), the run must leave it as it found it: after every file has closed, no
 * key of the test prefixes' shape may remain that was not there before. A leftover fails the run, naming
 * the keys. (Without REDIS_URL each file has a private server, removed with its folder.)
 */
import { Redis } from 'ioredis';
import { TEST_PREFIX_PATTERN } from './support/redis';

async function testKeys(url: string): Promise<Set<string>> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  const found = new Set<string>();
  try {
    for (const pattern of [`${TEST_PREFIX_PATTERN}*`, `{${TEST_PREFIX_PATTERN}*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        for (const key of keys) found.add(key);
        cursor = next;
      } while (cursor !== '0');
    }
  } finally {
    client.disconnect();
  }
  return found;
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const url = process.env.REDIS_URL;
  if (!url) return undefined;
  const before = await testKeys(url);
  return async () => {
    const left = [...(await testKeys(url))].filter((k) => !before.has(k));
    if (!left.length) return;
    // vitest reports a teardown's throw but still exits 0: say it, and fail the run's exit status
    console.error(`sdq: the tests left ${left.length} keys in the Redis at REDIS_URL, e.g. ${left.slice(0, 10).join(', ')}`);
    process.exitCode = 1;
  };
}
