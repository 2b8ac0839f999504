/**
 * The engine queues' read side, shared by the API and the webhook delivery process: one BullMQ Queue per
 * engine (opened on first use), one QueueEvents per watched engine, fanned out as per-job and all-job
 * events, and the reads a job object needs (state snapshot, queue position, counts).
 *
 * The engines a deployment has are kept in Redis (`<prefix>:engines`, added by each API process), so a
 * process without the models folder (webhook delivery) can watch every engine's events.
 */
import { EventEmitter } from 'node:events';
import { type ConnectionOptions, type Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { bullmqConnection, JobProgress, type JobResult, queueNameForEngine, taggedQueueName } from '@sdq/contracts';

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

export interface EngineQueuesOptions {
  redisUrl: string;
  /** BullMQ's prefix (QUEUE_PREFIX). */
  prefix: string;
  /** The prefix of sdq's own keys (the engine set, cancel flags): ownKeyPrefix(QUEUE_PREFIX, REDIS_URL). */
  keyPrefix: string;
  /** Engines whose events are heard from the start (more with watch()). */
  engines: string[];
  timeoutMs: number;
  logger: Logger;
  /** A fail-fast connection for the plain commands (LPOS, ZRANK, the engine set, ...). */
  redis: Redis;
}

export class EngineQueues {
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();
  private readonly bus = new EventEmitter();
  private readonly ends = new EventEmitter();
  private readonly all = new EventEmitter();
  /** Cluster clients BullMQ was handed (it closes only the ones it made). */
  private readonly releases: (() => void)[] = [];

  constructor(protected readonly opts: EngineQueuesOptions) {
    this.bus.setMaxListeners(0);
    this.watch(opts.engines);
  }

  /** The connection options of a producer in a web server: fail fast while Redis is down (BullMQ's advice). */
  protected failFastConnection() {
    const timeoutMs = this.opts.timeoutMs;
    return this.connection({ enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: timeoutMs, retryStrategy: (n: number) => Math.min(n * 100, 1000) });
  }

  private connection(overrides: Parameters<typeof bullmqConnection>[1]) {
    const { connection, release } = bullmqConnection(this.opts.redisUrl, overrides);
    this.releases.push(release);
    return connection as ConnectionOptions;
  }

  /** A BullMQ queue name as this deployment's keys carry it (hash-tagged in a Redis Cluster). */
  protected queueName(name: string): string {
    return taggedQueueName(name, this.opts.redisUrl);
  }

  /** An engine's queue, for reads and writes, opened the first time it is asked for (no events heard). */
  protected openQueue(engine: string): Queue {
    const open = this.queues.get(engine);
    if (open) return open;
    const queue = new Queue(this.queueName(queueNameForEngine(engine)), { prefix: this.opts.prefix, connection: this.failFastConnection() });
    queue.on('error', (err) => this.opts.logger.debug({ err: err.message, engine }, 'queue connection error'));
    this.queues.set(engine, queue);
    return queue;
  }

  /** Starts hearing the events of these engines' jobs (engines already watched are left as they are). */
  watch(engines: Iterable<string>): string[] {
    const added: string[] = [];
    for (const engine of engines) {
      if (this.events.has(engine)) continue;
      const name = this.queueName(queueNameForEngine(engine));
      this.openQueue(engine);
      const events = new QueueEvents(name, { prefix: this.opts.prefix, connection: this.connection({ maxRetriesPerRequest: null, retryStrategy: (n: number) => Math.min(n * 100, 1000) }) });
      events.on('error', (err) => this.opts.logger.debug({ err: err.message, engine }, 'queue events connection error'));
      events.on('active', ({ jobId }) => this.emit(jobId, { type: 'active' }));
      events.on('progress', ({ jobId, data }) => {
        const progress = JobProgress.safeParse(data);
        if (progress.success) this.emit(jobId, { type: 'progress', progress: progress.data });
      });
      events.on('completed', ({ jobId }) => this.emit(jobId, { type: 'completed' }));
      events.on('failed', ({ jobId, failedReason }) => this.emit(jobId, { type: 'failed', reason: failedReason }));
      events.on('removed', ({ jobId }) => this.emit(jobId, { type: 'removed' }));
      this.events.set(engine, events);
      added.push(engine);
    }
    return added;
  }

  /** Records engines in the deployment's engine set, for the processes that have no models folder. */
  async registerEngines(engines: string[]): Promise<void> {
    if (engines.length) await this.opts.redis.sadd(`${this.opts.keyPrefix}:engines`, ...engines);
  }

  /** Every engine any API process of this deployment has registered (ids that cannot name a queue left out). */
  async knownEngines(): Promise<string[]> {
    const ids = await this.opts.redis.smembers(`${this.opts.keyPrefix}:engines`);
    return ids.filter((id) => {
      try {
        queueNameForEngine(id);
        return true;
      } catch {
        return false;
      }
    });
  }

  private emit(jobId: string, event: QueueJobEvent): void {
    this.bus.emit(jobId, event);
    this.all.emit('event', jobId, event);
    if (event.type === 'completed' || event.type === 'failed') this.ends.emit('end', jobId, event);
  }

  /** Resolves once every watched engine's event stream is connected. */
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

  /** The engines whose events this process hears. */
  get engineIds(): string[] {
    return [...this.events.keys()];
  }

  /**
   * A watched engine's queue. Any other engine throws: a record of an engine this deployment no longer
   * has cannot be read as failed, only left alone (its hold to a process that can tell).
   */
  protected queue(engine: string): Queue {
    const queue = this.queues.get(engine);
    if (!queue) throw new Error(`no queue for engine ${engine}`);
    return queue;
  }

  /** The Redis key of one of a watched engine queue's BullMQ structures (wait, prioritized, a job's hash). */
  protected key(engine: string, suffix: string): string {
    this.queue(engine);
    return `${this.opts.prefix}:${this.queueName(queueNameForEngine(engine))}:${suffix}`;
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
    const { redis } = this.opts;
    const [tail, prioritized] = await Promise.all([redis.lrange(this.key(engine, 'wait'), '-1', '-1'), redis.zrange(this.key(engine, 'prioritized'), '0', '999')]);
    const ids = [...tail, ...prioritized];
    if (!ids.length) return undefined;
    const multi = redis.multi();
    for (const id of ids) multi.hget(this.key(engine, id), 'timestamp');
    const stamps = ((await multi.exec()) ?? []).map(([, v]) => Number(v)).filter((v) => Number.isFinite(v) && v > 0);
    return stamps.length ? Math.min(...stamps) : undefined;
  }

  /** Jobs ahead of this one (0 = next), or null when it is not waiting. */
  async position(engine: string, jobId: string): Promise<number | null> {
    const { redis } = this.opts;
    // BullMQ pushes new jobs on the left and workers take from the right; prioritized jobs wait in a
    // sorted set behind every job of the wait list.
    const waitKey = this.key(engine, 'wait');
    const [index, length, rank] = await Promise.all([redis.lpos(waitKey, jobId), redis.llen(waitKey), redis.zrank(this.key(engine, 'prioritized'), jobId)]);
    if (index !== null) return length - 1 - index;
    return rank === null ? null : length + rank;
  }

  async close(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.close()));
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    for (const release of this.releases.splice(0)) release();
  }
}
