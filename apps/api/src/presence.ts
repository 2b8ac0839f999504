/**
 * Which engines a live worker serves, from the claims workers keep in Redis (apps/worker/src/presence.ts).
 * A served engine is remembered for a second, so a burst of submissions costs Redis one look per engine;
 * an unserved one is looked up every time, so a worker that has just started is seen at once.
 */
import type { Redis } from 'ioredis';
import { servedEngineKey } from '@sdq/contracts';

const CACHE_MS = 1000;

export class EnginePresence {
  private readonly cache = new Map<string, { workers: number; at: number }>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** Live workers serving the engine now. */
  async workers(engineId: string): Promise<number> {
    const cached = this.cache.get(engineId);
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.workers;
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const workers = await this.redis.zcount(servedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
    if (workers > 0) this.cache.set(engineId, { workers, at: Date.now() });
    else this.cache.delete(engineId);
    return workers;
  }
}
