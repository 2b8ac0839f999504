/**
 * Webhooks as the apps use them: one object per process, built once from the Redis connection, the key
 * prefix and (where events are emitted) the delivery queue.
 *
 * - Where job events are observed: `emit()` turns an event into a delivery, records it and queues it.
 * - In the delivery process: `startWorker()` runs `process()` on the delivery queue.
 * - In the API: `accounts` (secret, rotation, default URL), `deliveries.list()`, `redeliver()`.
 */
import { type ConnectionOptions, type Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobObject } from '@sdq/contracts';
import { AccountWebhooks } from './account-webhooks.store';
import { DeliveryLog, type DeliveryRecord, type WebhookSource } from './deliveries.store';
import { DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_MS, deliver, type DeliveryResult } from './deliver';
import { type DeliveryJobData, deliveryJobOptions, DeliveryRetryError, webhookBackoffStrategy } from './delivery.queue';
import { wantsEvent, type WebhookEvent, type WebhookEventFilter, type WebhookEventType, webhookEvent } from './events';
import { WEBHOOK_QUEUE } from './keys';
import { ProgressThrottle } from './progress-throttle';
import { nextAttempt, RETRY_DELAYS_MS, type StopReason } from './retry-policy';
import { signatureHeaders } from './signing';
import { type AllowList, parseAllowList, type ResolveAll, systemResolveAll } from './ssrf';

/** What the package logs with (pino fits). Lines carry ids, the host, statuses and errors; never a URL's path or query, a body or a secret. */
export interface WebhookLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface WebhooksOptions {
  /** A command connection (the API's store connection will do). */
  redis: Redis;
  /** The key prefix (QUEUE_PREFIX); the delivery queue must be opened with the same prefix. */
  prefix: string;
  /** The BullMQ Queue named WEBHOOK_QUEUE; needed by emit() and redeliver(). */
  queue?: Pick<Queue, 'add'> & Partial<Pick<Queue, 'name' | 'opts'>>;
  /** WEBHOOK_ALLOWED_HOSTS: host names and IPs exempt from the SSRF check; default none. */
  allowedHosts?: AllowList | string | readonly string[];
  /** Grace period of a rotated secret, in ms; default 24 h. */
  secretGraceMs?: number;
  /** Bound on one attempt, in ms; default 10 000. */
  timeoutMs?: number;
  /** Bytes of a receiver's answer read at most; default 4096. */
  maxResponseBytes?: number;
  /** At most one progress delivery per job in this many ms; default 1000. */
  progressIntervalMs?: number;
  /** How long delivery records live without a sweep, in ms; default 7 days. */
  logRetentionMs?: number;
  /** Waits between attempts; default RETRY_DELAYS_MS (tests shorten them). */
  retryDelaysMs?: readonly number[];
  /** Name resolution; default the system resolver (tests inject one). */
  resolveAll?: ResolveAll;
  logger?: WebhookLogger;
}

export interface EmitInput {
  type: WebhookEventType;
  /** The job object as GET /v1/jobs/{id} returns it now. */
  job: JobObject;
  accountId: string;
  /** The job's own webhook URL (validated at submission); without it the account's default is used. */
  webhook?: string;
  /** The job's webhook_events_filter; default ['completed']. */
  events?: readonly WebhookEventFilter[];
  /** When the event happened; default now. */
  at?: Date;
  /** The body a dialect delivers in its own shape (Replicate's prediction); default the event as it is. */
  render?: (event: WebhookEvent) => unknown;
}

export type ProcessOutcome = { state: 'succeeded' | 'failed' | 'retrying'; result: DeliveryResult } | { state: 'skipped' | 'missing' | 'done' };

export class Webhooks {
  readonly accounts: AccountWebhooks;
  readonly deliveries: DeliveryLog;
  readonly throttle: ProgressThrottle;
  readonly prefix: string;
  private readonly allow: AllowList;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly resolveAll: ResolveAll;

  constructor(private readonly opts: WebhooksOptions) {
    this.prefix = opts.prefix;
    this.accounts = new AccountWebhooks(opts.redis, opts.prefix, { graceMs: opts.secretGraceMs });
    this.deliveries = new DeliveryLog(opts.redis, opts.prefix, opts.logRetentionMs);
    this.throttle = new ProgressThrottle(opts.redis, opts.prefix, { intervalMs: opts.progressIntervalMs });
    this.allow = parseAllowList(opts.allowedHosts);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxResponseBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.retryDelaysMs = opts.retryDelaysMs ?? RETRY_DELAYS_MS;
    this.resolveAll = opts.resolveAll ?? systemResolveAll;
  }

  /** The allow list in effect, for validateWebhookUrl at submission. */
  get allowedHosts(): AllowList {
    return this.allow;
  }

  /**
   * Queues the delivery of one job event, if the job (or its account) has a webhook wanting it. Progress
   * is throttled; started and completed are queued once per job however often they are emitted, so every
   * process that observes job events may call this. Returns the delivery, or undefined when none is due.
   */
  async emit(input: EmitInput): Promise<DeliveryRecord | undefined> {
    const { type, job, accountId } = input;
    if (!wantsEvent(input.events, type)) return undefined;
    let url = input.webhook;
    let source: WebhookSource = 'job';
    if (!url) {
      const fallback = await this.accounts.getDefaultWebhook(accountId);
      if (!fallback?.enabled) return undefined;
      url = fallback.url;
      source = 'account';
    }
    // Built first: a job.completed for an unfinished job throws here, before anything is recorded.
    const event = webhookEvent(type, job, input.at);

    const allowedAt = type === 'job.progress' ? await this.throttle.progressAllowedAt(job.id) : undefined;
    if (type === 'job.progress' && allowedAt === undefined) return undefined;
    // Before queueing: from here on, progress is neither emitted nor sent for this job.
    if (type === 'job.completed') await this.throttle.markCompleted(job.id);
    // Stamped once let through, progress by the throttle's own clock: its created_at are a window apart.
    if (!input.at) event.created_at = new Date(allowedAt ?? Date.now()).toISOString();
    const body = JSON.stringify(input.render ? input.render(event) : event);

    const { record, created } = await this.deliveries.create({
      jobId: job.id,
      accountId,
      event: type,
      url,
      source,
      body,
      eventKey: type === 'job.progress' ? undefined : type,
    });
    // The completed delivery waits for the started one's first attempt, even if it is picked up first.
    if (created && type === 'job.started') await this.throttle.holdCompletion(job.id, record.id, this.timeoutMs + 5_000);
    // An existing delivery not yet attempted may have been recorded by a process that died before
    // queueing it; adding it again is harmless, as the job id de-duplicates.
    if (created || (record.state === 'pending' && record.attempts === 0)) await this.enqueue(record.id);
    return record;
  }

  /** Sends a delivery again as a new delivery with the same webhook-id and body; undefined if not the job's. */
  async redeliver(jobId: string, deliveryId: string): Promise<DeliveryRecord | undefined> {
    const original = await this.deliveries.get(deliveryId);
    if (!original || original.jobId !== jobId) return undefined;
    const { record } = await this.deliveries.create({
      jobId,
      accountId: original.accountId,
      event: original.event,
      url: original.url,
      source: original.source,
      body: original.body,
      webhookId: original.webhookId,
      redeliveryOf: original.id,
    });
    await this.enqueue(record.id);
    return record;
  }

  /** Forgets a job's deliveries and throttle state (the API's retention sweep). */
  async removeJob(jobId: string): Promise<void> {
    await Promise.all([this.deliveries.removeJob(jobId), this.throttle.removeJob(jobId)]);
  }

  private async enqueue(deliveryId: string): Promise<void> {
    if (!this.opts.queue) throw new Error('Webhooks needs the delivery queue (option `queue`) to emit or redeliver');
    const data: DeliveryJobData = { deliveryId };
    // add() not addBulk(): only add() honours jobId deduplication.
    await this.opts.queue.add('deliver', data, deliveryJobOptions(deliveryId));
  }

  /**
   * One attempt of a delivery: the BullMQ processor of the delivery queue. Throws DeliveryRetryError when
   * another attempt is due (the backoff strategy reads its delay) and UnrecoverableError when the delivery
   * failed for good; both after the attempt is logged.
   */
  async process(job: Pick<Job<DeliveryJobData>, 'data'>): Promise<ProcessOutcome> {
    const record = await this.deliveries.get(job.data.deliveryId);
    // Removed with its job by the retention sweep.
    if (!record) return { state: 'missing' };
    // Already finished: a re-run after a crash between logging and BullMQ's bookkeeping.
    if (record.state !== 'pending' && record.state !== 'retrying') return { state: 'done' };

    const inFlightTtlMs = this.timeoutMs + 5_000;
    const isProgress = record.event === 'job.progress';
    // Registered by emit(); released after this attempt whatever its outcome.
    const holdsCompletion = isProgress || record.event === 'job.started';
    if (isProgress && !record.redeliveryOf && !(await this.throttle.beginProgressSend(record.jobId, record.id, inFlightTtlMs))) {
      await this.deliveries.skip(record.id, 'superseded');
      return { state: 'skipped' };
    }
    if (record.event === 'job.completed') await this.throttle.waitForProgressSends(record.jobId, inFlightTtlMs);

    let result: DeliveryResult;
    try {
      const secrets = await this.accounts.signingSecrets(record.accountId);
      const timestamp = Math.floor(Date.now() / 1000);
      result = await deliver({
        url: record.url,
        body: record.body,
        headers: signatureHeaders({ id: record.webhookId, timestamp, body: record.body }, secrets),
        timeoutMs: this.timeoutMs,
        maxResponseBytes: this.maxResponseBytes,
        allowedHosts: this.allow,
        resolveAll: this.resolveAll,
      });
    } finally {
      if (holdsCompletion) await this.throttle.endProgressSend(record.jobId, record.id);
    }

    const attempt = record.attempts + 1;
    const next = nextAttempt(attempt, result, { delaysMs: this.retryDelaysMs });
    await this.deliveries.recordAttempt(record.id, attempt, result, next);
    if (!next.retry && next.reason === 'gone' && record.source === 'account') {
      await this.accounts.disableDefaultWebhook(record.accountId, { reason: 'gone', ifUrl: record.url });
    }
    this.log(record, attempt, result, next.retry ? next.delayMs : next.reason);

    if (result.ok) return { state: 'succeeded', result };
    const what = result.status ? `status ${result.status}` : result.error;
    if (next.retry) throw new DeliveryRetryError(`webhook delivery ${record.id} attempt ${attempt} failed (${what})`, next.delayMs);
    throw new UnrecoverableError(`webhook delivery ${record.id} failed for good after attempt ${attempt} (${what}): ${next.reason}`);
  }

  /**
   * Runs the delivery queue in this process.
   * @param opts.concurrency deliveries in flight at once; default 16 (they mostly wait on the network).
   * @param opts.lockDurationMs a delivery's lock without renewal: a killed process's delivery runs again
   *   after it; default BullMQ's 30 000.
   * @param opts.stalledIntervalMs how often stalled deliveries are looked for; default BullMQ's 30 000.
   */
  startWorker({
    connection,
    concurrency = 16,
    lockDurationMs,
    stalledIntervalMs,
  }: {
    connection: ConnectionOptions;
    concurrency?: number;
    lockDurationMs?: number;
    stalledIntervalMs?: number;
  }): Worker<DeliveryJobData> {
    // the queue emit() adds to: its name and BullMQ prefix (hash-tagged in a Redis Cluster, unlike this.prefix)
    const queue = this.opts.queue;
    return new Worker<DeliveryJobData>(queue?.name ?? WEBHOOK_QUEUE, (job) => this.process(job), {
      prefix: queue?.opts?.prefix ?? this.prefix,
      connection,
      concurrency,
      ...(lockDurationMs ? { lockDuration: lockDurationMs } : {}),
      ...(stalledIntervalMs ? { stalledInterval: stalledIntervalMs } : {}),
      // A delivery process killed mid-attempt leaves its jobs stalled; they run again (same webhook-id)
      // rather than failing after BullMQ's default single stall.
      maxStalledCount: 5,
      settings: { backoffStrategy: webhookBackoffStrategy(this.retryDelaysMs) },
    });
  }

  private log(record: DeliveryRecord, attempt: number, result: DeliveryResult, next: number | StopReason): void {
    const logger = this.opts.logger;
    if (!logger) return;
    let host = '';
    try {
      host = new URL(record.url).host;
    } catch {
      // Unparseable URLs never get this far (deliver refuses them), but a log line must not throw.
    }
    const line = {
      deliveryId: record.id,
      jobId: record.jobId,
      event: record.event,
      webhookId: record.webhookId,
      host,
      attempt,
      status: result.status,
      error: result.error,
      durationMs: result.durationMs,
      ...(typeof next === 'number' ? { retryInMs: next } : { outcome: next }),
    };
    if (result.ok) logger.info(line, 'webhook delivered');
    else logger.warn(line, typeof next === 'number' ? 'webhook attempt failed, will retry' : 'webhook delivery failed for good');
  }
}
