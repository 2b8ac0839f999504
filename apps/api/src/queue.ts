/**
 * The API's one BullMQ module: the engine queues' read side and events (@sdq/jobs' EngineQueues, shared
 * with the webhook delivery process), plus what only the API does: adding jobs with their options,
 * cancellation, removal; and the webhook delivery queue (@sdq/webhooks decides its job options).
 */
import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { WEBHOOK_QUEUE } from '@sdq/webhooks';
import { cancelChannel, cancelFlagKey, CANCEL_FLAG_TTL_SECONDS, type JobPayload } from '@sdq/contracts';
import { EngineQueues } from '@sdq/jobs';

export type { QueueJobEvent, QueueJobSnapshot, QueueState } from '@sdq/jobs';

/** Every job option is decided here. */
export function jobOptions(payload: JobPayload, priority?: number): JobsOptions {
  return {
    // The account's tier (1 the highest): BullMQ picks lower numbers first, FIFO within one.
    ...(priority ? { priority } : {}),
    // The job id is sdq's job id, so the queue, the record, storage keys and logs share one id.
    jobId: payload.jobId,
    // Runtime and storage faults retry with backoff; the worker fails input errors as UnrecoverableError.
    attempts: 3,
    backoff: { type: 'exponential', delay: 1000 },
    // Finished jobs stay until the sweeper removes them with their record and stored objects, so a job
    // object can always be built while its record exists.
    removeOnComplete: false,
    removeOnFail: false,
  };
}

export class JobQueue extends EngineQueues {
  /** The webhook delivery queue (jobs added by @sdq/webhooks' emit and redeliver). */
  readonly deliveries: Queue;

  constructor(opts: { redisUrl: string; prefix: string; keyPrefix: string; engines: string[]; timeoutMs: number; logger: Logger; redis: Redis }) {
    super(opts);
    this.deliveries = new Queue(this.queueName(WEBHOOK_QUEUE), { prefix: opts.prefix, connection: this.failFastConnection() });
    this.deliveries.on('error', (err) => opts.logger.debug({ err: err.message }, 'webhook queue connection error'));
  }

  async add(payload: JobPayload, priority?: number): Promise<void> {
    // add() not addBulk(): only add() honours jobId deduplication.
    await this.queue(payload.engineId).add(payload.kind, payload, jobOptions(payload, priority));
  }

  /** Ids of the jobs still waiting that were added before `beforeMs`, oldest first (at most `limit`). */
  async waitingSince(engine: string, beforeMs: number, limit = 100): Promise<string[]> {
    const jobs = await this.queue(engine).getJobs(['waiting', 'prioritized', 'delayed'], 0, -1, true);
    return jobs
      .filter((j) => j.timestamp < beforeMs)
      .sort((a, b) => a.timestamp - b.timestamp)
      .slice(0, limit)
      .map((j) => j.id!);
  }

  /** Removes a job that has not started; false when it is running (locked) or gone. */
  async removeIfWaiting(engine: string, jobId: string): Promise<boolean> {
    const snapshot = await this.snapshot(engine, jobId);
    if (!snapshot || !['waiting', 'delayed', 'prioritized', 'waiting-children'].includes(snapshot.state)) return false;
    return (await this.queue(engine).remove(jobId)) === 1;
  }

  /** Asks the worker running a job to stop: a flag for workers that start it later, and a message. */
  async signalCancel(engine: string, jobId: string): Promise<void> {
    this.queue(engine);
    await this.opts.redis.set(cancelFlagKey(this.opts.keyPrefix, jobId), '1', 'EX', CANCEL_FLAG_TTL_SECONDS);
    await this.opts.redis.publish(cancelChannel(this.opts.keyPrefix), jobId);
  }

  /** Removes a finished job from its queue (retention); an engine no longer watched is left alone. */
  async remove(engine: string, jobId: string): Promise<void> {
    if (this.engineIds.includes(engine)) await this.queue(engine).remove(jobId);
  }

  async close(): Promise<void> {
    await this.deliveries.close();
    await super.close();
  }
}
