/**
 * Which engines a live worker serves, from the claims workers keep in Redis (apps/worker/src/presence.ts).
 * A served engine is remembered for a second, so a burst of submissions costs Redis one look per engine;
 * an unserved one is looked up every time, so a worker that has just started is seen at once.
 */
import type { Redis } from 'ioredis';
import { servedEngineKey, workerInfoKey, type WorkerObject, workersKey } from '@sdq/contracts';

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

  /** The live workers (heartbeat within PRESENCE_TTL_MS), with what each last reported, by id. */
  async list(): Promise<WorkerObject[]> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(workersKey(this.prefix), `(${now}`, '+inf');
    const multi = this.redis.multi();
    ids.sort();
    for (const id of ids) multi.hgetall(workerInfoKey(this.prefix, id));
    const rows = ((await multi.exec()) ?? []).map(([, row]) => row as Record<string, string>);
    const iso = (ms: string) => new Date(Number(ms)).toISOString();
    const json = <T>(text: string | undefined, fallback: T): T => {
      try {
        return text ? (JSON.parse(text) as T) : fallback;
      } catch {
        return fallback;
      }
    };
    return ids
      .map((id, i) => [id, rows[i]] as const)
      // a worker whose report expired between the two reads is not listed
      .filter(([, row]) => row && row.last_heartbeat)
      .map(([id, row]) => ({
        id,
        host: row.host,
        pid: Number(row.pid),
        engines: json<string[]>(row.engines, []),
        providers: json<Record<string, string>>(row.providers, {}),
        current_jobs: json<string[]>(row.current_jobs, []),
        jobs_done: Number(row.jobs_done),
        started_at: iso(row.started_at),
        last_heartbeat: iso(row.last_heartbeat),
      }));
  }
}
