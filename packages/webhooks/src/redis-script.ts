/** A Lua script file next to the code that runs it, sent by SHA and loaded once per server. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

export class RedisScript {
  private readonly source: string;
  private readonly sha: string;

  constructor(file: URL) {
    this.source = readFileSync(file, 'utf8');
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  async run(redis: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      // evalsha first: the source travels only when this server has not seen the script yet.
      if (!(err as Error).message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
