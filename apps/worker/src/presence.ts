/**
 * Tells the API which engines this worker serves: a claim per engine in Redis (see servedEngineKey),
 * renewed every PRESENCE_INTERVAL_MS and lasting PRESENCE_TTL_MS, so a worker that dies stops counting
 * within seconds and one that stops cleanly at once. Scores use Redis's clock, shared by every process.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { PRESENCE_INTERVAL_MS, PRESENCE_TTL_MS, servedEngineKey } from '@sdq/contracts';

export class Presence {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly workerId: string,
    private readonly engines: string[],
    private readonly logger: Logger,
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
    await multi.exec();
  }

  /** Withdraws the claims at once: an engine no other worker serves is then answered 503 by the API. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
    const multi = this.redis.multi();
    for (const engine of this.engines) multi.zrem(servedEngineKey(this.prefix, engine), this.workerId);
    await multi.exec().catch(() => {});
  }
}
