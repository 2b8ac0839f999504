/**
 * Runs a Lua script kept as a file next to the module that uses it: EVALSHA, and EVAL once when Redis
 * answers NOSCRIPT (a restarted or flushed Redis has forgotten it). The caller's client is used as it
 * is; nothing is defined on it, so the apps can share their connections.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

export class LuaScript {
  readonly sha: string;

  private constructor(
    readonly name: string,
    private readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Reads `file` (a URL relative to the caller: `new URL('./reserve.lua', import.meta.url)`). */
  static load(file: URL): LuaScript {
    return new LuaScript(file.pathname.split('/').pop()!, readFileSync(file, 'utf8'));
  }

  async run(redis: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
