/**
 * The worker's one BullMQ module: a BullMQ Worker per served engine's queue (so a job only reaches
 * workers that have its engine), the processor that validates payloads and runs the handlers, and the
 * translation of handler outcomes into BullMQ's: JobFailure -> UnrecoverableError (fails at once),
 * anything else -> a retried attempt (attempts and backoff come from the API's jobOptions).
 */
import { type ConnectionOptions, type Job, Queue, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { bullmqConnection, formatFailedReason, JOB_NAMES, type JobName, JobPayload, type JobResult, queueNameForEngine, type Storage, taggedQueueName } from '@sdq/contracts';
import type { CancelWatcher } from './cancel';
import type { WorkerConfig } from './config';
import type { LoadedEngine } from './engines';
import { classifyError, type JobContext, JobFailure, type JobHandlers } from './handlers';
import type { JobEventLog } from '@sdq/jobs/job-events';
import type { HoldCloser } from './holds';
import type { WorkerMetrics } from './metrics';

/** The payload versions this worker understands. */
const PAYLOAD_VERSIONS = [1];

export interface EngineWorkersOptions {
  config: WorkerConfig;
  engines: Map<string, LoadedEngine>;
  handlers: JobHandlers;
  storage: Storage;
  cancel: CancelWatcher;
  /** Settles or releases a job's credits when it ends here. */
  holds?: HoldCloser;
  /** Where its jobs' events go for webhook delivery (@sdq/jobs' job event stream). */
  events?: JobEventLog;
  metrics?: WorkerMetrics;
  logger: Logger;
}

/**
 * WORKER_CONCURRENCY (or WORKER_BATCH_SIZE, if larger) counts for the whole process, while BullMQ counts per Worker (per engine queue).
 * With several engines, the gate pauses the other engines' Workers while every slot is busy; a job one
 * of them fetched in the same instant waits here for a slot.
 */
class SlotGate {
  private used = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(
    private readonly slots: number,
    private readonly onFull: () => void,
    private readonly onFree: () => void,
  ) {}

  async acquire(): Promise<() => void> {
    if (this.used >= this.slots) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.used++;
    if (this.used === this.slots) this.onFull();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // A waiter takes the slot over directly, so `used` does not change.
      if (next) return next();
      this.used--;
      this.onFree();
    };
  }
}

export class EngineWorkers {
  private readonly workers = new Map<string, Worker>();
  private readonly gate: SlotGate;
  /** The jobs running now, and how many finished (GET /v1/admin/workers shows both). */
  readonly current = new Set<string>();
  /** Per engine: its jobs running now, and when one last started or ended (the least recently used goes first). */
  private readonly runningBy = new Map<string, number>();
  readonly usedAt = new Map<string, number>();
  /** Queues read (not worked) for the engines not loaded: whether a job waits for one. */
  private readonly watched = new Map<string, Queue>();
  done = 0;
  /** Called when a job starts or ends (the presence reports it at once). */
  onChange?: () => void;
  /** Loads another engine this worker serves, for a job that needs it beside its own (hires fix's upscaler); set by the residency. */
  loadEngine?: (id: string) => Promise<boolean>;
  /** Closes a cluster client handed to BullMQ (which closes only the clients it made). */
  private readonly releaseConnection: () => void;
  private readonly connection: ConnectionOptions;
  private readonly slots: number;

  constructor(private readonly opts: EngineWorkersOptions) {
    const { config, engines, handlers } = opts;
    const missing = JOB_NAMES.filter((name) => typeof handlers[name] !== 'function');
    if (missing.length > 0) throw new Error(`no handler registered for job name(s): ${missing.join(', ')}`);

    const { connection, release } = bullmqConnection(config.redisUrl, { maxRetriesPerRequest: null });
    this.connection = connection as ConnectionOptions;
    this.releaseConnection = release;
    // Batching needs the jobs of a batch in hand at once: the worker takes up to WORKER_BATCH_SIZE.
    this.slots = Math.max(config.concurrency, config.batchSize);
    for (const engineId of engines.keys()) this.workers.set(engineId, this.create(engineId));
    // with several engines, a full process pauses the others' Workers (read when it fills: engines come and go)
    const many = () => this.workers.size > 1;
    this.gate = new SlotGate(
      this.slots,
      () => many() && this.workers.forEach((w) => void w.pause(true)),
      () => many() && this.workers.forEach((w) => void w.resume()),
    );
  }

  /** One engine queue's BullMQ Worker, not yet running. */
  private create(engineId: string): Worker {
    const opts = this.opts;
    const { config, logger } = opts;
    const worker = new Worker(taggedQueueName(queueNameForEngine(engineId), config.redisUrl), (job, token) => this.process(engineId, job, token), {
      prefix: config.queuePrefix,
      connection: this.connection,
      concurrency: this.slots,
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStalledCount,
      // Started by run(), once every engine's Worker exists.
      autorun: false,
    });
    worker.on('error', (err) => logger.warn({ engine: engineId, err: err.message }, 'queue connection error'));
    worker.on('stalled', (jobId) => logger.warn({ job_id: jobId, engine: engineId }, 'job stalled (its worker stopped answering): back in the queue'));
    if (opts.holds) {
      const holds = opts.holds;
      worker.on('completed', (job) => holds.completed(job));
      worker.on('failed', (job) => holds.failed(job));
    }
    opts.events?.follow(worker);
    return worker;
  }

  /** Starts taking an engine's jobs (one loaded while the worker runs; `engines` already holds it). */
  add(engineId: string): void {
    if (this.workers.has(engineId)) return;
    const worker = this.create(engineId);
    this.workers.set(engineId, worker);
    worker.run().catch((err) => this.opts.logger.error({ engine: engineId, err }, 'worker loop stopped'));
  }

  /** Stops taking an engine's jobs; resolves once its running jobs have finished. */
  async remove(engineId: string): Promise<void> {
    const worker = this.workers.get(engineId);
    if (!worker) return;
    this.workers.delete(engineId);
    await worker.close();
  }

  /** Whether this process could start another job now. */
  get free(): boolean {
    return this.current.size < this.slots;
  }

  /** Whether one of the engine's jobs is running here. */
  busy(engineId: string): boolean {
    return (this.runningBy.get(engineId) ?? 0) > 0;
  }

  /**
   * The first jobs waiting in an engine's queue (in the order workers take them), and when the longest
   * waiting of them was queued; undefined when none waits. Read without taking: the engine may be one
   * this worker has not loaded.
   */
  async waiting(engineId: string, count = 10): Promise<{ since: number; jobs: Job[] } | undefined> {
    let queue = this.watched.get(engineId);
    if (!queue) {
      queue = new Queue(taggedQueueName(queueNameForEngine(engineId), this.opts.config.redisUrl), { prefix: this.opts.config.queuePrefix, connection: this.connection });
      this.watched.set(engineId, queue);
    }
    // asked 4 times a second per engine not loaded: a count first, the jobs only when some wait
    if ((await queue.getJobCountByTypes('prioritized', 'wait')) === 0) return undefined;
    const jobs = (await queue.getJobs(['prioritized', 'wait'], 0, count - 1, true)).filter(Boolean);
    if (!jobs.length) return undefined;
    return { since: Math.min(...jobs.map((j) => j.timestamp)), jobs };
  }

  /** Jobs waiting while this worker loads their engine show it: progress phase `loading model`. */
  async showLoading(jobs: Job[]): Promise<void> {
    await Promise.all(
      jobs.map(async (job) => {
        const steps = (job.data as { params?: { steps?: unknown } } | undefined)?.params?.steps;
        try {
          await job.updateProgress({ step: 0, steps: typeof steps === 'number' && Number.isInteger(steps) && steps >= 0 ? steps : 0, phase: 'loading model' });
          await this.opts.events?.publish(job.id!, 'progress');
        } catch {
          // taken or gone meanwhile: its own progress follows
        }
      }),
    );
  }

  /** Stops reading an engine's queue (it was removed). */
  async unwatch(engineId: string): Promise<void> {
    const queue = this.watched.get(engineId);
    this.watched.delete(engineId);
    await queue?.close();
  }

  /** Starts taking jobs. */
  run(): void {
    for (const [engineId, worker] of this.workers) {
      worker.run().catch((err) => this.opts.logger.error({ engine: engineId, err }, 'worker loop stopped'));
    }
  }

  get running(): boolean {
    return [...this.workers.values()].every((w) => w.isRunning());
  }

  private async process(engineId: string, job: Job, token: string | undefined): Promise<JobResult> {
    const { engines, handlers, storage, cancel } = this.opts;
    const log = this.opts.logger.child({ job_id: job.id, engine: engineId, job_name: job.name, attempt: job.attemptsMade + 1 });
    const payload = this.parse(engineId, job, log);
    const release = await this.gate.acquire();
    const tracked = await cancel.begin(job.id!);
    const started = performance.now();
    const metrics = this.opts.metrics;
    metrics?.queueWait.observe({ engine: engineId }, Math.max(0, Date.now() - job.timestamp) / 1000);
    let lastStep = started;
    let outcome = 'failed';
    this.current.add(job.id!);
    this.runningBy.set(engineId, (this.runningBy.get(engineId) ?? 0) + 1);
    this.usedAt.set(engineId, Date.now());
    this.onChange?.();
    try {
      if (tracked.canceled) throw new JobFailure('canceled', 'the job was canceled');
      log.info('job started');
      const ctx: JobContext<JobName> = {
        payload,
        engine: engines.get(engineId)!,
        storage,
        signal: tracked.signal,
        log,
        ffmpegPath: this.opts.config.ffmpegPath,
        engineById: async (id) => engines.get(id) ?? ((await this.loadEngine?.(id)) ? engines.get(id) : undefined),
        progress: (step, steps, frames) => {
          const now = performance.now();
          metrics?.stepSeconds.observe({ engine: engineId }, (now - lastStep) / 1000);
          lastStep = now;
          // Not awaited: the pipeline goes on while Redis records it; one connection keeps the order.
          job.updateProgress({ step, steps, ...(frames ? { frames_done: frames.done, frames: frames.total } : {}) }).catch((err) => log.warn({ err: err.message }, 'could not record progress'));
        },
      };
      const result = await (handlers[payload.kind] as (c: JobContext<JobName>) => Promise<JobResult>)(ctx);
      log.info({ ms: Math.round(performance.now() - started), artifacts: result.artifacts.length }, 'job succeeded');
      outcome = 'succeeded';
      return result;
    } catch (err) {
      if (tracked.signal.aborted && tracked.signal.reason === 'shutdown') {
        // The worker is stopping past its grace period: the job goes back to wait for another worker,
        // without spending one of its attempts.
        log.warn('worker shutting down: job returned to the queue');
        outcome = 'returned';
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const failure = classifyError(err);
      if (failure) {
        outcome = failure.code === 'canceled' ? 'canceled' : 'failed';
        log.info({ name: failure.code, reason: failure.message }, failure.code === 'canceled' ? 'job canceled' : 'job failed (not retried)');
        throw new UnrecoverableError(formatFailedReason(failure.code, failure.message));
      }
      const attempts = job.opts.attempts ?? 1;
      log.error({ err, retry: job.attemptsMade + 1 < attempts }, 'job attempt failed');
      outcome = job.attemptsMade + 1 < attempts ? 'retried' : 'failed';
      throw err;
    } finally {
      tracked.end();
      release();
      this.current.delete(job.id!);
      this.runningBy.set(engineId, (this.runningBy.get(engineId) ?? 1) - 1);
      this.usedAt.set(engineId, Date.now());
      this.done++;
      this.onChange?.();
      metrics?.jobDuration.observe({ engine: engineId, kind: job.name, outcome }, (performance.now() - started) / 1000);
      metrics?.jobs.inc({ engine: engineId, outcome });
    }
  }

  /** The job's payload, or an UnrecoverableError: a malformed payload stays malformed. */
  private parse(engineId: string, job: Job, log: Logger): JobPayload {
    const fail = (message: string) => {
      log.warn({ reason: message }, 'job refused');
      return new UnrecoverableError(formatFailedReason('bad_request', message));
    };
    const version = (job.data as { version?: unknown } | undefined)?.version;
    if (!PAYLOAD_VERSIONS.includes(version as number)) {
      throw fail(`payload version ${JSON.stringify(version)} is not one this worker knows (${PAYLOAD_VERSIONS.join(', ')}): upgrade the worker`);
    }
    const parsed = JobPayload.safeParse(job.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw fail(`invalid payload: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    const payload = parsed.data;
    if (payload.kind !== job.name) throw fail(`job name ${job.name} does not match the payload kind ${payload.kind}`);
    if (payload.engineId !== engineId) throw fail(`payload engine ${payload.engineId} arrived on the queue of ${engineId}`);
    if (payload.jobId !== job.id) throw fail(`payload job id ${payload.jobId} is not the queue job id ${job.id}`);
    return payload;
  }

  /**
   * Stops taking jobs and waits for the running ones up to graceMs; then aborts them, which returns
   * them to the queue (see process), and waits for that.
   */
  async close(graceMs: number): Promise<void> {
    const closing = Promise.all([...this.workers.values()].map((w) => w.close()));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'grace'>((resolve) => (timer = setTimeout(() => resolve('grace'), graceMs)));
    if ((await Promise.race([closing, grace])) === 'grace') {
      this.opts.logger.warn({ grace_ms: graceMs }, 'grace period over: returning running jobs to the queue');
      this.opts.cancel.abortAll('shutdown');
      await closing;
    }
    clearTimeout(timer);
    await Promise.all([...this.watched.values()].map((q) => q.close()));
    this.releaseConnection();
  }
}
