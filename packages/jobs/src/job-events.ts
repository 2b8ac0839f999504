/**
 * Every job's events in one Redis stream, whatever its engine, for the webhook delivery process.
 *
 * Delivery used to hear job ends on each engine queue's own event stream, from the moment it started
 * listening to that engine; an engine it had not learnt of yet (a fresh start, an engine added at run
 * time) ended its jobs unheard, and their webhooks waited for the sweep (30 s). Here the process where
 * an event happens (the worker: started, progress, the end; the API: a cancel or an unserved job taking
 * a job out of its queue) appends it to `<keyPrefix>:job-events`, and delivery reads that stream in a
 * consumer group: from its last position after a restart, each entry to one delivery process, an entry
 * a dead process held claimed by another after CLAIM_IDLE_MS. An entry is acknowledged once handled.
 *
 * The stream is capped (about MAX_LEN entries, Redis's approximate trim); the delivery sweep stays the
 * backstop for whatever a stream entry could not carry (Redis down when the worker appended, a trim
 * past an entry nobody read). Progress is appended at most every PROGRESS_EVERY_MS per job: webhooks
 * send at most one progress a second anyway.
 */
import type { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** What a stream entry says; `removed` is a job taken out of its queue (canceled while queued, unserved). */
export type JobEventType = 'active' | 'progress' | 'completed' | 'failed' | 'removed';
const TYPES = new Set<string>(['active', 'progress', 'completed', 'failed', 'removed']);

/** Entries kept, about (XADD MAXLEN ~). */
const MAX_LEN = 100_000;
/** A job's progress is appended at most this often. */
export const PROGRESS_EVERY_MS = 250;

export const jobEventStream = (keyPrefix: string) => `${keyPrefix}:job-events`;

/** Appends job events (the worker, the API). Never throws: a lost entry is what the sweep is for. */
export class JobEventLog {
  private readonly key: string;
  private readonly lastProgress = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    keyPrefix: string,
    private readonly logger: Logger,
  ) {
    this.key = jobEventStream(keyPrefix);
  }

  /** Appends what a BullMQ Worker does with its jobs: started, progress, completed, failed (each attempt). */
  follow(worker: Pick<Worker, 'on'>): void {
    worker.on('active', (job: Job) => void this.publish(job.id!, 'active'));
    worker.on('progress', (job: Job) => void this.publish(job.id!, 'progress'));
    worker.on('completed', (job: Job) => void this.publish(job.id!, 'completed'));
    worker.on('failed', (job: Job | undefined) => job?.id && void this.publish(job.id, 'failed'));
  }

  async publish(jobId: string, type: JobEventType): Promise<void> {
    if (type === 'progress') {
      const now = Date.now();
      if (now - (this.lastProgress.get(jobId) ?? 0) < PROGRESS_EVERY_MS) return;
      this.lastProgress.set(jobId, now);
    } else if (type !== 'active') {
      this.lastProgress.delete(jobId);
    }
    try {
      await this.redis.xadd(this.key, 'MAXLEN', '~', MAX_LEN, '*', 'job', jobId, 'type', type);
    } catch (err) {
      this.logger.warn({ job_id: jobId, event: type, err: (err as Error).message }, 'could not append a job event; the webhook sweep will find the end');
    }
  }
}

/** Handles one entry; the entry says only what happened, the handler reads the job's state itself. */
export type JobEventHandler = (jobId: string, type: JobEventType) => Promise<void>;

export interface JobEventReaderOptions {
  /** A connection of its own: XREADGROUP blocks it, and stop() closes it. */
  redis: Redis;
  keyPrefix: string;
  /** This process's name in the group (unique per process). */
  consumer: string;
  logger: Logger;
  /** The consumer group; default "webhooks". */
  group?: string;
  /** How long one read waits for entries, in ms; default 1000 (also how soon stop() returns). */
  blockMs?: number;
  /** An entry read by another process and not acknowledged for this long is taken over; default 15000. */
  claimIdleMs?: number;
}

/** Reads the stream in a consumer group and hands each entry to `handler`; acknowledges it after. */
export class JobEventReader {
  private readonly key: string;
  private readonly group: string;
  private running = false;
  private loop?: Promise<void>;

  constructor(private readonly opts: JobEventReaderOptions) {
    this.key = jobEventStream(opts.keyPrefix);
    this.group = opts.group ?? 'webhooks';
  }

  start(handler: JobEventHandler): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run(handler);
  }

  /**
   * Stops reading and closes its connection. Waits for the read in progress at most one block: a command
   * queued while Redis is down is never answered once the connection is closed (ioredis drops it).
   */
  async stop(): Promise<void> {
    this.running = false;
    this.opts.redis.disconnect();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, (this.opts.blockMs ?? 1000) + 500)))]);
    clearTimeout(timer);
  }

  private async run(handler: JobEventHandler): Promise<void> {
    const { redis, consumer, logger } = this.opts;
    const claimIdleMs = this.opts.claimIdleMs ?? 15_000;
    let lastClaim = 0;
    let created = false;
    while (this.running) {
      try {
        if (!created) {
          // From the stream's start on first creation: events appended before any delivery process ran
          // (a fresh deployment's first jobs) are read too. An existing group keeps its position.
          await redis.xgroup('CREATE', this.key, this.group, '0', 'MKSTREAM').catch((err: Error) => {
            if (!/BUSYGROUP/.test(err.message)) throw err;
          });
          created = true;
        }
        if (Date.now() - lastClaim >= claimIdleMs / 2) {
          lastClaim = Date.now();
          const claimed = (await redis.xautoclaim(this.key, this.group, consumer, claimIdleMs, '0-0', 'COUNT', 100)) as [string, [string, string[]][]];
          if (claimed[1]?.length) await this.handle(claimed[1], handler);
          await this.forgetGone();
        }
        const read = (await redis.xreadgroup('GROUP', this.group, consumer, 'COUNT', 100, 'BLOCK', this.opts.blockMs ?? 1000, 'STREAMS', this.key, '>')) as [string, [string, string[]][]][] | null;
        if (read?.[0]?.[1]?.length) await this.handle(read[0][1], handler);
      } catch (err) {
        // Redis away (or the group lost with its stream): the next turn creates it again and reads on.
        created = false;
        if (this.running) {
          logger.debug({ err: (err as Error).message }, 'job event stream read failed; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
  }

  /** Consumers of processes long gone (nothing pending, idle an hour): every restart adds a name. */
  private async forgetGone(): Promise<void> {
    const consumers = (await this.opts.redis.xinfo('CONSUMERS', this.key, this.group)) as unknown[][];
    for (const fields of consumers) {
      const info: Record<string, unknown> = Object.create(null);
      for (let i = 0; i + 1 < fields.length; i += 2) info[String(fields[i])] = fields[i + 1];
      if (info.name !== this.opts.consumer && Number(info.pending) === 0 && Number(info.idle) > 3_600_000) {
        await this.opts.redis.xgroup('DELCONSUMER', this.key, this.group, String(info.name));
      }
    }
  }

  private async handle(entries: [string, string[]][], handler: JobEventHandler): Promise<void> {
    const ids: string[] = [];
    await Promise.all(
      entries.map(async ([id, fields]) => {
        ids.push(id);
        // a deleted entry claimed comes back with no fields
        if (!fields) return;
        const entry: Record<string, string> = Object.create(null);
        for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i]] = fields[i + 1];
        if (!entry.job || !TYPES.has(entry.type)) return;
        await handler(entry.job, entry.type as JobEventType);
      }),
    );
    if (ids.length) await this.opts.redis.xack(this.key, this.group, ...ids);
  }
}
