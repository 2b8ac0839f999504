/**
 * Tells the API which engines this worker serves: a claim per engine in Redis (see servedEngineKey),
 * renewed every PRESENCE_INTERVAL_MS and lasting PRESENCE_TTL_MS, so a worker that dies stops counting
 * within seconds and one that stops cleanly at once. Scores use Redis's clock, shared by every process.
 * The engines it has loaded are claimed the same way (loadedEngineKey): other workers read them to
 * leave a job to the worker that holds its engine, and the API to say `ready`.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { engineLoadLockKey, loadedEngineKey, PRESENCE_INTERVAL_MS, PRESENCE_TTL_MS, servedEngineKey, workerInfoKey, workersKey } from '@sdq/contracts';

/** What the worker reports with each heartbeat besides its engines. */
export interface WorkerReport {
  host: string;
  pid: number;
  /** engine -> execution provider */
  providers: Record<string, string>;
  /** Its memory bound and each generation engine's per-image model (the API refuses sizes none can fit). */
  memory?: { budget: number; limit: number; engines: Record<string, unknown> };
  startedAt: number;
  /** The jobs running now and the count finished so far, read at each heartbeat. */
  status(): { current: string[]; done: number };
  /** The animation formats it writes (webp, gif, and mp4 where its ffmpeg has libx264): the API refuses the rest at submission. */
  animationFormats?: string[];
  /** Engines it is loading now or could not load (with why), read at each heartbeat. */
  engineStates?(): Record<string, { state: 'loading' | 'failed'; reason?: string }>;
}

export class Presence {
  private timer: NodeJS.Timeout | undefined;
  // once withdrawn, never claimed again: a job ending during the stop must not re-register the worker
  private stopped = false;
  private loaded: string[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly workerId: string,
    private engines: string[],
    private readonly logger: Logger,
    private readonly report?: WorkerReport,
  ) {}

  /** Claims the engines now, then keeps renewing, and at once whenever Redis comes back (it may have lost them). */
  async start(): Promise<void> {
    await this.renew();
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => {
      this.renew().catch((err) => this.logger.debug({ err: (err as Error).message }, 'could not renew the worker presence'));
    }, PRESENCE_INTERVAL_MS);
    this.timer.unref();
  }

  private readonly onReady = () => {
    this.renew().catch((err) => this.logger.debug({ err: (err as Error).message }, 'could not renew the worker presence'));
  };

  private async renew(): Promise<void> {
    if (this.stopped) return;
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const multi = this.redis.multi();
    for (const engine of this.engines) {
      const key = servedEngineKey(this.prefix, engine);
      multi.zadd(key, now + PRESENCE_TTL_MS, this.workerId);
      // Claims of workers that died long ago go, so the set stays small.
      multi.zremrangebyscore(key, '-inf', now - PRESENCE_TTL_MS);
      multi.pexpire(key, PRESENCE_TTL_MS * 4);
    }
    for (const engine of this.loaded) {
      const key = loadedEngineKey(this.prefix, engine);
      multi.zadd(key, now + PRESENCE_TTL_MS, this.workerId);
      multi.zremrangebyscore(key, '-inf', now - PRESENCE_TTL_MS);
      multi.pexpire(key, PRESENCE_TTL_MS * 4);
    }
    if (this.report) {
      const r = this.report;
      const { current, done } = r.status();
      const info = workerInfoKey(this.prefix, this.workerId);
      multi.zadd(workersKey(this.prefix), now + PRESENCE_TTL_MS, this.workerId);
      multi.zremrangebyscore(workersKey(this.prefix), '-inf', now - PRESENCE_TTL_MS);
      multi.hset(info, {
        host: r.host,
        pid: String(r.pid),
        engines: JSON.stringify(this.engines),
        loaded: JSON.stringify(this.loaded),
        providers: JSON.stringify(r.providers),
        ...(r.memory ? { memory: JSON.stringify(r.memory) } : {}),
        ...(r.animationFormats ? { animation_formats: JSON.stringify(r.animationFormats) } : {}),
        current_jobs: JSON.stringify(current),
        jobs_done: String(done),
        engine_states: JSON.stringify(r.engineStates?.() ?? {}),
        started_at: String(r.startedAt),
        last_heartbeat: String(now),
      });
      multi.pexpire(info, PRESENCE_TTL_MS * 2);
    }
    // a stop that came while this renewal was in flight: withdraw what it just wrote
    if (this.stopped) await multi.exec().then(() => this.withdraw());
    else await multi.exec();
  }

  /** The engines served change (one loaded or removed while the worker runs): claims follow at once. */
  async setEngines(engines: string[]): Promise<void> {
    const dropped = this.engines.filter((e) => !engines.includes(e));
    this.engines = [...engines];
    if (dropped.length) {
      const multi = this.redis.multi();
      for (const engine of dropped) multi.zrem(servedEngineKey(this.prefix, engine), this.workerId);
      await multi.exec();
    }
    await this.renew();
  }

  /** The engines loaded change (one loaded or unloaded): claims follow at once. */
  async setLoaded(loaded: string[]): Promise<void> {
    const dropped = this.loaded.filter((e) => !loaded.includes(e));
    this.loaded = [...loaded];
    if (dropped.length) {
      const multi = this.redis.multi();
      for (const engine of dropped) multi.zrem(loadedEngineKey(this.prefix, engine), this.workerId);
      await multi.exec();
    }
    await this.renew();
  }

  /** Live workers other than this one that have the engine loaded. */
  async othersLoaded(engineId: string): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(loadedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
    return ids.filter((id) => id !== this.workerId).length;
  }

  /** Takes the engine's load lock for ms (false: another worker is loading it for its jobs now). */
  async lockLoad(engineId: string, ms: number): Promise<boolean> {
    return (await this.redis.set(engineLoadLockKey(this.prefix, engineId), this.workerId, 'PX', ms, 'NX')) === 'OK';
  }

  /** Gives the load lock back, if this worker still holds it. */
  async unlockLoad(engineId: string): Promise<void> {
    await this.redis.eval(UNLOCK, 1, engineLoadLockKey(this.prefix, engineId), this.workerId).catch(() => {});
  }

  /** Reports now (a job started or ended), rather than at the next heartbeat. */
  touch(): void {
    this.renew().catch((err) => this.logger.debug({ err: (err as Error).message }, 'could not renew the worker presence'));
  }

  /** Withdraws the claims at once: an engine no other worker serves is then answered 503 by the API. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
    await this.withdraw();
  }

  private async withdraw(): Promise<void> {
    const multi = this.redis.multi();
    for (const engine of this.engines) multi.zrem(servedEngineKey(this.prefix, engine), this.workerId);
    for (const engine of this.loaded) multi.zrem(loadedEngineKey(this.prefix, engine), this.workerId);
    multi.zrem(workersKey(this.prefix), this.workerId);
    multi.del(workerInfoKey(this.prefix, this.workerId));
    await multi.exec().catch(() => {});
  }
}

/** Deletes the lock only when its value is this worker's id (a lock that expired may be another's now). */
const UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
