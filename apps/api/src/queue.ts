/**
 * The API's one BullMQ module: one Queue and one QueueEvents per engine, the job options, cancellation
 * and the per-job event stream that SSE and synchronous requests listen to; and the webhook delivery
 * queue (@sdq/webhooks decides its job options).
 */
import { EventEmitter } from 'node:events';
import { type Job, type JobsOptions, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { WEBHOOK_QUEUE } from '@sdq/webhooks';
import {
  cancelChannel,
  cancelFlagKey,
  CANCEL_FLAG_TTL_SECONDS,
  type JobPayload,
  JobProgress,
  type JobResult,
  queueNameForEngine,
} from '@sdq/contracts';
import { redisOptionsFromUrl } from './config';

/** What a job's listeners hear, from QueueEvents. */
export type QueueJobEvent =
  | { type: 'active' }
  | { type: 'progress'; progress: JobProgress }
  | { type: 'completed' }
  | { type: 'failed'; reason: string }
  | { type: 'removed' };

export type QueueState = 'waiting' | 'delayed' | 'prioritized' | 'waiting-children' | 'active' | 'completed' | 'failed' | 'unknown';

export interface QueueJobSnapshot {
  state: QueueState;
  progress: JobProgress | null;
  result: JobResult | null;
  failedReason?: string;
  /** Unix ms. */
  processedOn?: number;
  finishedOn?: number;
}

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

export class JobQueue {
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();
  private readonly bus = new EventEmitter();
  private readonly ends = new EventEmitter();
  private readonly all = new EventEmitter();
  /** The webhook delivery queue (jobs added by @sdq/webhooks' emit and redeliver). */
  readonly deliveries: Queue;

  constructor(
    private readonly opts: {
      redisUrl: string;
      prefix: string;
      engines: string[];
      timeoutMs: number;
      logger: Logger;
      /** The store's fail-fast connection, for the plain commands below (cancel flag, publish, LPOS). */
      redis: Redis;
    },
  ) {
    this.bus.setMaxListeners(0);
    const base = redisOptionsFromUrl(opts.redisUrl);
    const failFast = { ...base, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: opts.timeoutMs, retryStrategy: (n: number) => Math.min(n * 100, 1000) };
    this.deliveries = new Queue(WEBHOOK_QUEUE, { prefix: opts.prefix, connection: failFast });
    this.deliveries.on('error', (err) => opts.logger.debug({ err: err.message }, 'webhook queue connection error'));
    for (const engine of opts.engines) {
      const name = queueNameForEngine(engine);
      // The API must fail fast while Redis is down (BullMQ's advice for producers in web servers).
      const queue = new Queue(name, {
        prefix: opts.prefix,
        connection: { ...base, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: opts.timeoutMs, retryStrategy: (n: number) => Math.min(n * 100, 1000) },
      });
      queue.on('error', (err) => opts.logger.debug({ err: err.message, engine }, 'queue connection error'));
      this.queues.set(engine, queue);

      const events = new QueueEvents(name, { prefix: opts.prefix, connection: { ...base, retryStrategy: (n: number) => Math.min(n * 100, 1000) } });
      events.on('error', (err) => opts.logger.debug({ err: err.message, engine }, 'queue events connection error'));
      events.on('active', ({ jobId }) => this.emit(jobId, { type: 'active' }));
      events.on('progress', ({ jobId, data }) => {
        const progress = JobProgress.safeParse(data);
        if (progress.success) this.emit(jobId, { type: 'progress', progress: progress.data });
      });
      events.on('completed', ({ jobId }) => this.emit(jobId, { type: 'completed' }));
      events.on('failed', ({ jobId, failedReason }) => this.emit(jobId, { type: 'failed', reason: failedReason }));
      events.on('removed', ({ jobId }) => this.emit(jobId, { type: 'removed' }));
      this.events.set(engine, events);
    }
  }

  private emit(jobId: string, event: QueueJobEvent): void {
    this.bus.emit(jobId, event);
    this.all.emit('event', jobId, event);
    if (event.type === 'completed' || event.type === 'failed') this.ends.emit('end', jobId, event);
  }

  /** Resolves once every engine's event stream is connected. */
  async eventsReady(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.waitUntilReady()));
  }

  /** Listens to every event of every job, whichever engine (the webhook delivery process). */
  onEvent(listener: (jobId: string, event: QueueJobEvent) => void): void {
    this.all.on('event', listener);
  }

  /** Listens to every job's end (completed, or failed for good), whichever engine; e.g. to close its hold. */
  onEnd(listener: (jobId: string, event: QueueJobEvent) => void): void {
    this.ends.on('end', listener);
  }

  /** Listens to one job's events; returns the function that stops listening. */
  subscribe(jobId: string, listener: (event: QueueJobEvent) => void): () => void {
    this.bus.on(jobId, listener);
    return () => this.bus.off(jobId, listener);
  }

  /** The engines this process has a queue for. */
  get engineIds(): string[] {
    return [...this.queues.keys()];
  }

  private queue(engine: string): Queue {
    const queue = this.queues.get(engine);
    if (!queue) throw new Error(`no queue for engine ${engine}`);
    return queue;
  }

  async add(payload: JobPayload, priority?: number): Promise<void> {
    // add() not addBulk(): only add() honours jobId deduplication.
    await this.queue(payload.engineId).add(payload.kind, payload, jobOptions(payload, priority));
  }

  async snapshot(engine: string, jobId: string): Promise<QueueJobSnapshot | undefined> {
    // State first, then the job's hash: a job that finishes in between then shows as still running,
    // never as failed without its reason or completed without its result.
    const state = (await this.queue(engine).getJobState(jobId)) as QueueState;
    const job: Job | undefined = await this.queue(engine).getJob(jobId);
    if (!job) return undefined;
    const progress = JobProgress.safeParse(job.progress);
    return {
      state,
      progress: progress.success ? progress.data : null,
      result: state === 'completed' ? (job.returnvalue as JobResult) : null,
      failedReason: job.failedReason,
      processedOn: job.processedOn,
      finishedOn: job.finishedOn,
    };
  }

  /** Job counts of an engine's queue by state (metrics). */
  async counts(engine: string, states: string[]): Promise<Record<string, number>> {
    return this.queue(engine).getJobCounts(...(states as Parameters<Queue['getJobCounts']>));
  }

  /**
   * When the oldest waiting job of an engine was added (ms), or undefined when none waits: the wait
   * list's tail (its oldest) and the first 1000 prioritized jobs, read in one round trip.
   */
  async oldestWaiting(engine: string): Promise<number | undefined> {
    const base = `${this.opts.prefix}:${queueNameForEngine(engine)}`;
    this.queue(engine);
    const [tail, prioritized] = await Promise.all([this.opts.redis.lrange(`${base}:wait`, '-1', '-1'), this.opts.redis.zrange(`${base}:prioritized`, '0', '999')]);
    const ids = [...tail, ...prioritized];
    if (!ids.length) return undefined;
    const multi = this.opts.redis.multi();
    for (const id of ids) multi.hget(`${base}:${id}`, 'timestamp');
    const stamps = ((await multi.exec()) ?? []).map(([, v]) => Number(v)).filter((v) => Number.isFinite(v) && v > 0);
    return stamps.length ? Math.min(...stamps) : undefined;
  }

  /** Jobs ahead of this one (0 = next), or null when it is not waiting. */
  async position(engine: string, jobId: string): Promise<number | null> {
    this.queue(engine);
    const waitKey = `${this.opts.prefix}:${queueNameForEngine(engine)}:wait`;
    // BullMQ pushes new jobs on the left and workers take from the right; prioritized jobs wait in a
    // sorted set behind every job of the wait list.
    const prioritizedKey = `${this.opts.prefix}:${queueNameForEngine(engine)}:prioritized`;
    const [index, length, rank] = await Promise.all([this.opts.redis.lpos(waitKey, jobId), this.opts.redis.llen(waitKey), this.opts.redis.zrank(prioritizedKey, jobId)]);
    if (index !== null) return length - 1 - index;
    return rank === null ? null : length + rank;
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
    await this.opts.redis.set(cancelFlagKey(this.opts.prefix, jobId), '1', 'EX', CANCEL_FLAG_TTL_SECONDS);
    await this.opts.redis.publish(cancelChannel(this.opts.prefix), jobId);
  }

  /** Removes a finished job from its queue (retention). */
  async remove(engine: string, jobId: string): Promise<void> {
    const queue = this.queues.get(engine);
    if (queue) await queue.remove(jobId);
  }

  async close(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.close()));
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    await this.deliveries.close();
  }
}
