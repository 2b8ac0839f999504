/**
 * Turns job events into webhook deliveries, in the delivery process (main.ts):
 *
 * - the job event stream (@sdq/jobs' job-events.ts: every job's events, whatever its engine, read from
 *   this deployment's last position): `active` -> job.started, `progress` -> job.progress, the job's end
 *   (completed, failed for good, canceled, unserved) -> job.completed, each with the job object exactly
 *   as GET /v1/jobs/{id} builds it (@sdq/jobs' JobView.describe);
 * - a sweep over the jobs whose job.completed has not been dealt with (a set the store fills when a job
 *   is created), the backstop for an end the stream could not carry (Redis down when it happened).
 *
 * Several delivery processes may run: @sdq/webhooks queues started and completed once per job and
 * throttles progress across processes, so hearing an event twice sends it once.
 */
import type { Logger } from 'pino';
import { type FalJobMeta, falWebhookBody, type JobObject, type ReplicateJobMeta, replicatePrediction, TERMINAL_STATUSES } from '@sdq/contracts';
import { wantsEvent, type WebhookEvent, type WebhookEventFilter, type WebhookEventType, type Webhooks } from '@sdq/webhooks';
import type { JobEventType, JobRecord, JobRecords, JobView } from '@sdq/jobs';

export interface JobWebhooksOptions {
  store: Pick<JobRecords, 'getJob' | 'webhooksPending' | 'webhookDone'>;
  jobs: Pick<JobView, 'describe' | 'snapshot' | 'status' | 'closeHold'>;
  webhooks: Webhooks;
  logger: Logger;
  /** Progress events of one job looked at, at most one per this many ms (the package throttles again, across processes); default 1000. */
  progressIntervalMs?: number;
  /** How long a `removed` event waits for the canceled job's record to say so, in ms; default 2000. */
  cancelWaitMs?: number;
}

/** Jobs looked at per page, and at most per sweep. */
const SWEEP_PAGE = 200;
const SWEEP_MAX = 5000;

export class JobWebhooks {
  /** Events of one job are handled one after another, in arrival order: completed never before started. */
  private readonly chains = new Map<string, Promise<void>>();
  /** When a job's progress was last looked at (ms). */
  private readonly lastProgress = new Map<string, number>();
  private readonly progressIntervalMs: number;
  private readonly cancelWaitMs: number;

  constructor(private readonly deps: JobWebhooksOptions) {
    this.progressIntervalMs = deps.progressIntervalMs ?? 1000;
    this.cancelWaitMs = deps.cancelWaitMs ?? 2000;
  }

  /** One job event (the job event stream's reader); resolves once it is dealt with. */
  handle(jobId: string, type: JobEventType): Promise<void> {
    if (type === 'progress') {
      // Most steps stop here, before any Redis call.
      const now = Date.now();
      if (now - (this.lastProgress.get(jobId) ?? 0) < this.progressIntervalMs) return Promise.resolve();
      this.lastProgress.set(jobId, now);
    }
    const previous = this.chains.get(jobId) ?? Promise.resolve();
    const next = previous
      .then(() => this.onEvent(jobId, type))
      .catch((err) => this.deps.logger.warn({ job_id: jobId, event: type, err: (err as Error).message }, 'could not emit a webhook event; the sweep retries completions'));
    this.chains.set(jobId, next);
    void next.then(() => {
      if (this.chains.get(jobId) === next) this.chains.delete(jobId);
    });
    return next;
  }

  /** Resolves when every event heard so far has been handled (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.chains.size) await Promise.all([...this.chains.values()]);
  }

  private async onEvent(jobId: string, type: JobEventType): Promise<void> {
    switch (type) {
      case 'active':
        return this.emitOpen(jobId, 'job.started');
      case 'progress':
        return this.emitOpen(jobId, 'job.progress');
      case 'completed':
      case 'failed':
        // A failed attempt that will be retried leaves the job queued: nothing is sent for it.
        this.lastProgress.delete(jobId);
        await this.complete(jobId);
        return;
      case 'removed':
        this.lastProgress.delete(jobId);
        return this.onRemoved(jobId);
    }
  }

  /** job.started or job.progress, if the job wants it. */
  private async emitOpen(jobId: string, type: WebhookEventType): Promise<void> {
    const record = await this.deps.store.getJob(jobId);
    if (!record || !wantsEvent(eventsOf(record), type) || !(await this.hasWebhook(record))) return;
    const job = await this.deps.jobs.describe(record);
    // Heard late (the job ended meanwhile): completion is what counts now.
    if (TERMINAL_STATUSES.has(job.status)) return;
    await this.emit(type, record, job);
  }

  /**
   * Emits job.completed when the job has finished; true when it is dealt with (emitted, none wanted, or
   * the job is gone), false while it is still open.
   */
  async complete(jobId: string): Promise<boolean> {
    const { store, jobs } = this.deps;
    const record = await store.getJob(jobId);
    if (!record) {
      await store.webhookDone(jobId);
      return true;
    }
    const snapshot = await jobs.snapshot(record);
    // Not in its queue, neither canceled nor unserved: removed by the retention sweep, whose status
    // ("failed") would be wrong to announce.
    if (!snapshot && !record.canceled_at && !record.unserved_at) {
      await store.webhookDone(jobId);
      return true;
    }
    if (!TERMINAL_STATUSES.has(jobs.status(record, snapshot))) return false;
    if (wantsEvent(eventsOf(record), 'job.completed') && (await this.hasWebhook(record))) {
      // The hold is closed first (idempotent; the worker and the API close it too), so credits_charged is final.
      await jobs.closeHold(jobId, { record, snapshot });
      await this.emit('job.completed', record, await jobs.describe(record, snapshot));
    }
    await store.webhookDone(jobId);
    return true;
  }

  /**
   * A job removed from its queue: canceled while queued or unserved (the record says so before the
   * removal; a moment after, for a record read before the mark landed), or expired. Only the first two
   * are announced; the sweep catches a mark noted later than the wait.
   */
  private async onRemoved(jobId: string): Promise<void> {
    const deadline = Date.now() + this.cancelWaitMs;
    for (;;) {
      const record = await this.deps.store.getJob(jobId);
      if (!record) return;
      if (record.canceled_at || record.unserved_at) {
        await this.complete(jobId);
        return;
      }
      if (Date.now() >= deadline) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async hasWebhook(record: JobRecord): Promise<boolean> {
    if (record.webhook) return true;
    return !!(await this.deps.webhooks.accounts.getDefaultWebhook(record.account_id))?.enabled;
  }

  private async emit(type: WebhookEventType, record: JobRecord, job: JobObject): Promise<void> {
    const delivery = await this.deps.webhooks.emit({ type, job, accountId: record.account_id, webhook: record.webhook, events: eventsOf(record), render: renderOf(record) });
    if (delivery) this.deps.logger.debug({ job_id: record.id, event: type, delivery_id: delivery.id }, 'webhook event queued');
  }

  /**
   * Emits job.completed for every finished job not yet dealt with, oldest first; returns how many were
   * dealt with. Bounded per call; the rest wait for the next.
   */
  async sweep(): Promise<number> {
    let offset = 0;
    let done = 0;
    for (let seen = 0; seen < SWEEP_MAX; ) {
      const ids = await this.deps.store.webhooksPending(offset, SWEEP_PAGE);
      if (ids.length === 0) break;
      for (const id of ids) {
        seen++;
        let dealtWith = false;
        try {
          dealtWith = await this.complete(id);
        } catch (err) {
          // One job this process cannot read (an engine it does not know, say) must not stop the sweep.
          this.deps.logger.warn({ job_id: id, err: (err as Error).message }, 'webhook sweep skipped a job');
        }
        // A job dealt with leaves the set, so the next page starts that much earlier.
        if (dealtWith) done++;
        else offset++;
      }
    }
    // Progress times of jobs whose end this process never heard.
    const stale = Date.now() - 10 * 60_000;
    for (const [id, at] of this.lastProgress) if (at < stale) this.lastProgress.delete(id);
    return done;
  }
}

function eventsOf(record: JobRecord): WebhookEventFilter[] | undefined {
  return record.webhook_events ? (record.webhook_events.split(',') as WebhookEventFilter[]) : undefined;
}

/**
 * The body a job's dialect delivers: a job made through Replicate's API is delivered as its prediction
 * object, one made through fal's queue with fal's webhook body; every other job as sdq's event.
 */
function renderOf(record: JobRecord): ((event: WebhookEvent) => unknown) | undefined {
  if (!record.dialect) return undefined;
  const meta = JSON.parse(record.dialect) as { name?: string };
  // the API's public URL, as the job object's own URL names it
  if (meta.name === 'replicate') return (event) => replicatePrediction(event.data, meta as ReplicateJobMeta, event.data.urls.self.replace(/\/v1\/jobs\/[^/]+$/, ''));
  if (meta.name === 'fal') return (event) => falWebhookBody(event.data, meta as FalJobMeta);
  return undefined;
}
