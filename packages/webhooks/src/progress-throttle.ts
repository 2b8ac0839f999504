/**
 * Progress deliveries: at most one per job per window (1 s), none after the job completed, and none
 * reaching a receiver after the completed one.
 *
 * State lives in Redis because the processes involved differ: events are emitted where job events are
 * observed (the API, possibly several of them) and sent by the delivery process.
 * - At emit time, `allowProgress` (SET NX PX) lets one progress event per window through across all
 *   emitters, and none once `markCompleted` ran.
 * - At send time, a progress delivery registers as in flight unless the job completed meanwhile (then it is
 *   superseded and dropped), and the completed delivery waits until no progress delivery is in flight.
 */
import type { Redis } from 'ioredis';
import { webhookKeys, type WebhookKeys } from './keys';
import { LuaScript } from '@sdq/contracts';

const allowProgressScript = LuaScript.load(new URL('./allow-progress.lua', import.meta.url));
const beginProgressSendScript = LuaScript.load(new URL('./begin-progress-send.lua', import.meta.url));

export interface ProgressThrottleOptions {
  /** At most one progress event per job in this many ms; default 1000. */
  intervalMs?: number;
  /** How long the completed marker is kept, in ms; default 7 days (longer than any retry schedule). */
  completedTtlMs?: number;
}

export class ProgressThrottle {
  private readonly keys: WebhookKeys;
  private readonly intervalMs: number;
  private readonly completedTtlMs: number;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    { intervalMs = 1000, completedTtlMs = 7 * 24 * 3_600_000 }: ProgressThrottleOptions = {},
  ) {
    this.keys = webhookKeys(prefix);
    this.intervalMs = intervalMs;
    this.completedTtlMs = completedTtlMs;
  }

  /** True for the first progress event of a job in the current window, if the job has not completed. */
  async allowProgress(jobId: string): Promise<boolean> {
    return (await this.progressAllowedAt(jobId)) !== undefined;
  }

  /**
   * As allowProgress, answering when (Redis's clock, Unix ms) the event was let through, or undefined.
   * Stamping the event with it keeps stamps a window apart however long this process takes to go on.
   */
  async progressAllowedAt(jobId: string): Promise<number | undefined> {
    const at = Number(await allowProgressScript.run(this.redis, [this.keys.completed(jobId), this.keys.progressThrottle(jobId)], [this.intervalMs]));
    return at > 0 ? at : undefined;
  }

  /** Called before the completed event is emitted: later progress events are dropped. */
  async markCompleted(jobId: string): Promise<void> {
    await this.redis.set(this.keys.completed(jobId), '1', 'PX', this.completedTtlMs);
  }

  async isCompleted(jobId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.completed(jobId))) === 1;
  }

  /**
   * Registers a progress delivery as in flight for at most `ttlMs`; false when the job has completed and
   * the delivery should be dropped.
   */
  async beginProgressSend(jobId: string, deliveryId: string, ttlMs: number): Promise<boolean> {
    const until = Date.now() + ttlMs;
    const begun = await beginProgressSendScript.run(this.redis, [this.keys.completed(jobId), this.keys.progressInFlight(jobId)], [deliveryId, until]);
    return begun === 1;
  }

  /**
   * Makes the job's completed delivery wait for this one (a job.started just queued) for at most `ttlMs`,
   * until endProgressSend: a started delivery not yet attempted must not be overtaken either.
   */
  async holdCompletion(jobId: string, deliveryId: string, ttlMs: number): Promise<void> {
    await this.redis.zadd(this.keys.progressInFlight(jobId), Date.now() + ttlMs, deliveryId);
  }

  async endProgressSend(jobId: string, deliveryId: string): Promise<void> {
    await this.redis.zrem(this.keys.progressInFlight(jobId), deliveryId);
  }

  /** Waits until no progress delivery of the job is in flight, at most `maxWaitMs`; true when none is. */
  async waitForProgressSends(jobId: string, maxWaitMs: number, pollMs = 25): Promise<boolean> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      // An entry whose time has passed belongs to a process that died mid-attempt: it no longer counts.
      const inFlight = await this.redis.zcount(this.keys.progressInFlight(jobId), `(${Date.now()}`, '+inf');
      if (inFlight === 0) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Removes a job's throttle state (the retention sweep). */
  async removeJob(jobId: string): Promise<void> {
    await this.redis.del(this.keys.completed(jobId), this.keys.progressThrottle(jobId), this.keys.progressInFlight(jobId));
  }
}
