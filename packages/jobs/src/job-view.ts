/**
 * The public job object, built the same way by every process that answers for a job (the API's
 * GET /v1/jobs/{id}, SSE, and the webhook delivery process's bodies): its status from the queue's state,
 * its error, signed artifact URLs, queue position and the credits charged; and closing its hold from that
 * same status, so the job object and the ledger can never disagree.
 */
import type { Logger } from 'pino';
import { type JobKind, type JobObject, type JobStatus, parseFailedReason, type Storage, TERMINAL_STATUSES } from '@sdq/contracts';
import { type CreditsService, toCredits } from '@sdq/credits';
import { filteredIn, holdFate, type HoldFate, type JobCharge } from './charge';
import type { EngineQueues, QueueJobSnapshot } from './engine-queues';
import type { JobRecord, JobRecords } from './records';

export interface JobViewDeps {
  /** Read on every call: the API learns its public URL once it listens. */
  config: { readonly publicUrl: string; readonly artifactUrlExpiry: number };
  store: Pick<JobRecords, 'getJob'>;
  queue: Pick<EngineQueues, 'snapshot' | 'position'>;
  storage: Pick<Storage, 'signedUrl'>;
  credits: Pick<CreditsService, 'charged'>;
  /** Closes the hold when this view reads an end (see charge.ts). */
  charge: Pick<JobCharge, 'apply'>;
  logger: Logger;
}

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);

export class JobView {
  constructor(protected readonly deps: JobViewDeps) {}

  async snapshot(record: JobRecord): Promise<QueueJobSnapshot | undefined> {
    return this.deps.queue.snapshot(record.engine, record.id);
  }

  status(record: JobRecord, snapshot: QueueJobSnapshot | undefined): JobStatus {
    if (!snapshot) return record.canceled_at ? 'canceled' : 'failed';
    // Its hash exists but no state list holds it: a transition caught half-way (BullMQ moving a retried
    // job between lists), not an end. Reading it as failed released the hold of a job that then succeeded.
    if (snapshot.state === 'unknown') return 'queued';
    switch (snapshot.state) {
      case 'active':
        return 'running';
      case 'completed':
        return 'succeeded';
      case 'failed':
        return parseFailedReason(snapshot.failedReason).name === 'canceled' ? 'canceled' : 'failed';
      default:
        return 'queued';
    }
  }

  async describe(given: JobRecord, known?: QueueJobSnapshot): Promise<JobObject> {
    const { config, storage, queue } = this.deps;
    const snapshot = known ?? (await this.snapshot(given));
    // Gone from its queue: the record says why (canceled, unserved), and a record held since submission
    // predates a cancel another request made meanwhile.
    const record = snapshot ? given : ((await this.deps.store.getJob(given.id)) ?? given);
    const status = this.status(record, snapshot);
    const base = `${config.publicUrl}/v1/jobs/${record.id}`;
    let error: JobObject['error'] = null;
    if (status === 'failed') {
      error = snapshot
        ? parseFailedReason(snapshot.failedReason)
        : record.unserved_at
          ? { name: 'engine_unavailable', message: `no live worker served engine ${record.engine} while the job waited; it was not run and nothing was charged` }
          : { name: 'internal_error', message: 'the job is no longer in its queue' };
    } else if (status === 'canceled') {
      error = { name: 'canceled', message: 'the job was canceled' };
    }
    const artifacts =
      status === 'succeeded' && snapshot?.result
        ? await Promise.all(
            snapshot.result.artifacts.map(async ({ key, ...rest }) => ({ url: await storage.signedUrl(key, config.artifactUrlExpiry), ...rest, content_filtered: rest.finish_reason === 'CONTENT_FILTERED' })),
          )
        : [];
    return {
      id: record.id,
      status,
      engine: record.engine,
      kind: record.kind as JobKind,
      created_at: iso(record.created_at)!,
      started_at: iso(snapshot?.processedOn),
      finished_at: TERMINAL_STATUSES.has(status) ? iso(snapshot?.finishedOn ?? record.canceled_at ?? Date.now()) : null,
      queue_position: status === 'queued' ? await queue.position(record.engine, record.id) : null,
      progress: snapshot?.progress ?? null,
      artifacts,
      error,
      // An open job's hold is open: no lookup on the submission path.
      credits_charged: TERMINAL_STATUSES.has(status) ? await this.charged(record.id) : null,
      params: paramsOf(record),
      urls: { self: base, cancel: `${base}/cancel`, events: `${base}/events` },
    };
  }

  /**
   * The job object of a job this request has just queued, in one read (its queue position) instead of
   * three (its state, its hash and the position): while it waits, nothing else about it can have
   * changed. A job that has left the wait list already (a fast worker) is described in full.
   */
  async describeQueued(record: JobRecord): Promise<JobObject> {
    const position = await this.deps.queue.position(record.engine, record.id);
    if (position === null) return this.describe(record);
    const base = `${this.deps.config.publicUrl}/v1/jobs/${record.id}`;
    return {
      id: record.id,
      status: 'queued',
      engine: record.engine,
      kind: record.kind as JobKind,
      created_at: iso(record.created_at)!,
      started_at: null,
      finished_at: null,
      queue_position: position,
      progress: null,
      artifacts: [],
      error: null,
      credits_charged: null,
      params: paramsOf(record),
      urls: { self: base, cancel: `${base}/cancel`, events: `${base}/events` },
    };
  }

  /** Decimal credits charged for a job: the cost once settled, 0 once released, null while open. */
  private async charged(jobId: string): Promise<number | null> {
    const micro = await this.deps.credits.charged(jobId);
    return micro === null ? null : toCredits(micro);
  }

  /**
   * Reports a job's end, as its state in the queue reads, to the charge (charge.ts has the rule); an
   * unfinished job keeps its hold. Idempotent: any process may call it, any number of times.
   */
  async closeHold(jobId: string, known?: { record?: JobRecord; snapshot?: QueueJobSnapshot }): Promise<void> {
    const record = known?.record ?? (await this.deps.store.getJob(jobId));
    if (!record) return;
    await this.deps.charge.apply(jobId, this.fateOf(record, known?.snapshot ?? (await this.snapshot(record))));
  }

  protected fateOf(record: JobRecord, snapshot: QueueJobSnapshot | undefined): HoldFate {
    return holdFate(this.status(record, snapshot), !snapshot, filteredIn(snapshot?.result?.artifacts));
  }
}

function paramsOf(record: JobRecord): JobObject['params'] {
  if (!record.params) return null;
  try {
    return JSON.parse(record.params) as JobObject['params'];
  } catch {
    return null;
  }
}
