/**
 * Jobs: creation (uploads to storage, record, enqueue), the public job object, waiting, listing,
 * cancellation and expiry. Routes call this; this calls the store, the queue and storage.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  type JobInputName,
  type NewJob,
  inputKey,
  jobKeyPrefixes,
  jobParamsView,
  type JobObject,
  type JobPayload,
  SAFETY_MODES,
  type SafetyMode,
  ServiceError,
  type Storage,
  TERMINAL_STATUSES,
} from '@sdq/contracts';
import { type Cost, type CreditsService, type Hold, type IdempotencyStore } from '@sdq/credits';
import { type HoldFate, type JobCharge, type JobEventLog, JobView } from '@sdq/jobs';
import type { Webhooks } from '@sdq/webhooks';
import type { Config } from './config';
import type { JobQueue, QueueJobSnapshot } from './queue';
import type { JobRecord, Store } from './store';

/** The storage field of each input a payload can name: a new input name is a compile error until it has one. */
const INPUT_FIELDS = { initImage: 'init_image', maskImage: 'mask_image', image: 'image' } as const satisfies Record<JobInputName, 'init_image' | 'mask_image' | 'image'>;

/** The bytes of a job's inputs, by the names its payload gives their storage keys. */
export type JobInputs = { [K in JobInputName]?: { data: Buffer; contentType: string } };

/** A job's webhook as submitted (URL checked already); either part may be absent. */
export interface JobWebhook {
  url?: string;
  events?: readonly string[];
}

/** What a dialect that answers in its own objects keeps on the record (`JobRecord.dialect`). */
export interface JobDialect {
  name: string;
  [field: string]: unknown;
}

/** A job's own webhook, its submitting key and its dialect's record. */
export interface JobExtras {
  webhook?: JobWebhook;
  keyId?: string;
  dialect?: JobDialect;
}

export type { NewJob };

/** How long a retry with the same Idempotency-Key waits for the first request before 409. */
const IDEMPOTENCY_WAIT_MS = 2000;

export interface JobsDeps {
  config: Config;
  store: Store;
  queue: JobQueue;
  storage: Storage;
  credits: CreditsService;
  /** The only closer of holds (a cancel, an unserved job, a submission not queued report to it). */
  charge: JobCharge;
  /** The job event stream: a job this process takes out of its queue (cancel, unserved) is told there. */
  events: JobEventLog;
  idempotency: IdempotencyStore;
  logger: Logger;
  /** Where the job sweep removes a job's webhook deliveries. */
  webhooks?: Pick<Webhooks, 'removeJob'>;
  metrics?: { creditsReserved: { inc(value: number): void } };
}

/** How long an account's tier and safety mode are remembered: a change applies to jobs submitted after this. */
const SETTINGS_CACHE_MS = 5000;

/** The job object and hold closing come from @sdq/jobs' JobView, shared with the webhook delivery process. */
export class JobsService extends JobView {
  private readonly settings = new Map<string, { priority: number; safety: SafetyMode; at: number }>();

  constructor(protected override readonly deps: JobsDeps) {
    super(deps);
  }

  /** An account's BullMQ priority (its tier's, else the default tier's) and safety mode (its own, else SAFETY_MODE). */
  private async settingsOf(accountId: string): Promise<{ priority: number; safety: SafetyMode }> {
    const cached = this.settings.get(accountId);
    if (cached && Date.now() - cached.at < SETTINGS_CACHE_MS) return cached;
    const { tiers, defaultTier } = this.deps.config.credits;
    const { tier, safetyMode } = await this.deps.store.accountSettings(accountId);
    const own = (SAFETY_MODES as readonly string[]).includes(safetyMode) ? (safetyMode as SafetyMode) : undefined;
    const settings = { priority: tiers.get(tier) ?? tiers.get(defaultTier)!, safety: own ?? this.deps.config.safetyMode, at: Date.now() };
    this.settings.set(accountId, settings);
    if (this.settings.size > 10_000) this.settings.clear();
    return settings;
  }

  private async priorityOf(accountId: string): Promise<number> {
    return (await this.settingsOf(accountId)).priority;
  }

  /**
   * The safety mode a job of this account runs with, recorded on it: the account's, else SAFETY_MODE. A
   * client that asks for no checker (fal's enable_safety_checker: false) gets none only where the mode
   * would not change the image anyway (off or flag).
   */
  async safetyFor(accountId: string, checker = true): Promise<SafetyMode> {
    const mode = (await this.settingsOf(accountId)).safety;
    return !checker && (mode === 'off' || mode === 'flag') ? 'off' : mode;
  }

  /**
   * Accepts a job that passed validation: with an Idempotency-Key, the first request's job if this one
   * repeats it; otherwise holds its cost (402 insufficient_balance or 429 too_many_active_jobs, nothing
   * queued) and creates it. If creating fails after the hold, the hold is released: a request that did
   * not queue a job never costs anything.
   */
  async submit(
    accountId: string,
    engineId: string,
    job: NewJob,
    inputs: JobInputs,
    opts: { cost: Cost; idempotency?: { key: string; bodyHash: string }; webhook?: JobWebhook; keyId?: string; dialect?: JobDialect },
  ): Promise<{ record: JobRecord; repeated: boolean }> {
    const { idempotency } = this.deps;
    const idem = opts.idempotency;
    if (!idem) return { record: await this.reserveAndCreate(accountId, engineId, job, inputs, opts.cost, { webhook: opts.webhook, keyId: opts.keyId, dialect: opts.dialect }), repeated: false };
    const claim = await idempotency.begin(accountId, idem.key, idem.bodyHash, { waitMs: IDEMPOTENCY_WAIT_MS });
    switch (claim.status) {
      case 'done': {
        const record = await this.deps.store.getJob(claim.job_id);
        if (!record) throw new ServiceError('idempotency_key_mismatch', `Idempotency-Key: its job ${claim.job_id} has expired; use a new key`);
        return { record, repeated: true };
      }
      case 'mismatch':
        throw new ServiceError('idempotency_key_mismatch', 'Idempotency-Key: already used with a different request (body or endpoint); use a new key');
      case 'in_progress':
        throw new ServiceError('idempotency_key_in_use', 'Idempotency-Key: a request with this key is still being accepted; retry shortly', { headers: { 'Retry-After': '1' } });
      case 'new':
        try {
          const record = await this.reserveAndCreate(accountId, engineId, job, inputs, opts.cost, { webhook: opts.webhook, keyId: opts.keyId, dialect: opts.dialect });
          await idempotency.complete(accountId, idem.key, record.id, claim.token);
          return { record, repeated: false };
        } catch (err) {
          await idempotency.abort(accountId, idem.key, claim.token).catch(() => {});
          throw err;
        }
    }
  }

  private async reserveAndCreate(accountId: string, engineId: string, job: NewJob, inputs: JobInputs, cost: Cost, extra: JobExtras): Promise<JobRecord> {
    const { credits, config, logger } = this.deps;
    // The hold is taken under the id the queue will use, so every close (settle, release) finds it.
    const id = randomUUID();
    // SAFETY_REFUND as it is now: the hold says what a filtered image gives back when the job is settled
    const held = await credits.reserve(accountId, id, cost.total, { maxActive: config.credits.maxActiveJobs, refundPerImage: config.safetyRefund ? cost.per_image : 0 });
    if (!held.ok) {
      if (held.status === 'insufficient_balance') throw new ServiceError('insufficient_balance', held.message);
      throw new ServiceError('too_many_active_jobs', held.message, { headers: { 'Retry-After': '1' } });
    }
    this.deps.metrics?.creditsReserved.inc(cost.total / 1_000_000);
    try {
      return await this.create(accountId, engineId, job, inputs, id, extra);
    } catch (err) {
      // Not queued: give the hold back. Should this process die first, the reaper releases it.
      await this.deps.charge.released(id, 'not_enqueued').catch((e) => logger.warn({ job_id: id, err: (e as Error).message }, 'could not release the hold of a job not queued; the reaper will'));
      throw err;
    }
  }

  async create(accountId: string, engineId: string, job: NewJob, inputs: JobInputs, id: string = randomUUID(), { webhook, keyId, dialect }: JobExtras = {}): Promise<JobRecord> {
    const { store, queue, storage, config } = this.deps;
    const createdAt = Date.now();
    // Uploads go to storage first: the payload only names their keys.
    const keys: Record<string, string> = {};
    const uploads = Object.entries(INPUT_FIELDS) as [JobInputName, (typeof INPUT_FIELDS)[JobInputName]][];
    try {
      for (const [name, field] of uploads) {
        const input = inputs[name];
        if (!input) continue;
        keys[name] = inputKey(id, field);
        await storage.put(keys[name], input.data, input.contentType);
      }
    } catch (err) {
      // No job will name them: an init image stored before the mask's write failed goes too.
      if (Object.keys(keys).length) await storage.deletePrefix(`inputs/${id}/`).catch(() => {});
      throw err;
    }
    const common = { version: 1 as const, jobId: id, accountId, engineId, createdAt };
    const payload = { ...common, ...job, ...(Object.keys(keys).length ? { inputs: keys } : {}) } as JobPayload;
    const record: JobRecord = { id, account_id: accountId, engine: engineId, kind: job.kind, created_at: createdAt, seq: 0, params: JSON.stringify(jobParamsView(job)) };
    if (webhook?.url) record.webhook = webhook.url;
    if (webhook?.events) record.webhook_events = webhook.events.join(',');
    if (keyId) record.key_id = keyId;
    if (dialect) record.dialect = JSON.stringify(dialect);
    // The record first, so that a worker's events always find a job the API knows.
    await store.saveNewJob(record, createdAt + config.resultRetention * 1000);
    await queue.add(payload, await this.priorityOf(accountId));
    this.deps.logger.info({ job_id: id, engine: engineId, kind: job.kind, account_id: accountId }, 'job queued');
    return record;
  }

  /** The caller's own job; another account's is not found, not forbidden. */
  async getOwn(accountId: string, id: string): Promise<JobRecord> {
    const record = await this.deps.store.getJob(id);
    if (!record || record.account_id !== accountId) throw new ServiceError('not_found', `job ${id} not found`);
    return record;
  }

  /** The reconciler: closes the holds whose job's end nobody reported (holdFate decides). */
  reconcileHolds(): Promise<{ checked: number; settled: string[]; released: string[] }> {
    return this.deps.charge.reconcile((hold) => this.holdFate(hold), { graceMs: 0 });
  }

  /**
   * For the reconciler: what to do with an open hold. A job the queue no longer has is released once the
   * hold is older than HOLD_GRACE (younger, its request may still be adding it).
   */
  async holdFate(hold: Hold, now = Date.now()): Promise<HoldFate> {
    const record = await this.deps.store.getJob(hold.job_id);
    const young = now - Date.parse(hold.created_at) < this.deps.config.credits.holdGraceMs;
    if (!record) return young ? { action: 'keep' } : { action: 'release', reason: 'job_gone' };
    let snapshot: QueueJobSnapshot | undefined;
    try {
      snapshot = await this.snapshot(record);
    } catch (err) {
      // An engine this process does not serve (or Redis trouble): leave the hold to a process that can tell.
      this.deps.logger.debug({ job_id: hold.job_id, err: (err as Error).message }, 'cannot read the job of a hold');
      return { action: 'keep' };
    }
    if (!snapshot && !record.canceled_at) return young ? { action: 'keep' } : { action: 'release', reason: 'job_gone' };
    return this.fateOf(record, snapshot);
  }

  /**
   * Resolves when the job is finished or `ms` have passed; the snapshot it ended on. A job that ended has
   * its hold closed first (once, whoever does it), so an answer built from it and a balance read right
   * after agree: the end listener alone left a refund to land a moment after the answer.
   */
  async waitForEnd(record: JobRecord, ms: number): Promise<QueueJobSnapshot | undefined> {
    const snapshot = await this.untilEnd(record, ms);
    if (TERMINAL_STATUSES.has(this.status(record, snapshot))) {
      await this.closeHold(record.id, { record, snapshot }).catch((err) => this.deps.logger.warn({ job_id: record.id, err: (err as Error).message }, 'could not close the hold; the reconciler will'));
    }
    return snapshot;
  }

  private async untilEnd(record: JobRecord, ms: number): Promise<QueueJobSnapshot | undefined> {
    let stop = () => {};
    const ended = new Promise<void>((resolve) => {
      stop = this.deps.queue.subscribe(record.id, (event) => {
        if (event.type === 'completed' || event.type === 'failed' || event.type === 'removed') resolve();
      });
    });
    try {
      // Subscribed before looking, so an end between the look and the wait is not missed.
      const first = await this.snapshot(record);
      if (TERMINAL_STATUSES.has(this.status(record, first)) || ms <= 0) return first;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
      return await this.snapshot(record);
    } finally {
      stop();
    }
  }

  async list(accountId: string, limit: number, cursor?: string): Promise<{ data: JobObject[]; next_cursor: string | null }> {
    let before: number | undefined;
    if (cursor !== undefined) {
      before = /^[A-Za-z0-9_-]+$/.test(cursor) ? Number(Buffer.from(cursor, 'base64url').toString()) : NaN;
      if (!Number.isInteger(before) || before < 1) throw new ServiceError('bad_request', 'cursor: is not a cursor this API returned', { field: 'cursor' });
    }
    const { records, nextSeq } = await this.deps.store.listJobs(accountId, limit, before);
    const data = await Promise.all(records.map((r) => this.describe(r)));
    return { data, next_cursor: nextSeq === undefined ? null : Buffer.from(String(nextSeq)).toString('base64url') };
  }

  /** The newest of a key's jobs among its account's last `within` that has not ended, described. */
  async currentOfKey(accountId: string, keyId: string, within = 20): Promise<JobObject | undefined> {
    const { records } = await this.deps.store.listJobs(accountId, within);
    for (const record of records) {
      if (record.key_id !== keyId) continue;
      const object = await this.describe(record);
      if (!TERMINAL_STATUSES.has(object.status)) return object;
    }
    return undefined;
  }

  /** Queued: removed at once. Running: the worker is told to stop. Finished: 409. */
  async cancel(record: JobRecord): Promise<JobObject> {
    const { queue, store, logger } = this.deps;
    const before = await this.snapshot(record);
    const status = this.status(record, before);
    if (TERMINAL_STATUSES.has(status)) throw new ServiceError('conflict', `job ${record.id} is already ${status}`);
    if (status === 'queued') {
      // The hold is released before the job is removed: a worker finishing the job in between (a fast
      // one) then settles nothing, so a canceled job is never charged. A hold settled already means the
      // job has just succeeded: too late to cancel.
      const released = await this.deps.charge.released(record.id, 'canceled');
      if (released.status === 'already_settled') throw new ServiceError('conflict', `job ${record.id} is already succeeded`);
      // Marked before removal: a reader between the two would see a job gone without its reason (failed,
      // internal_error) instead of canceled. Unmarked if a worker took it meanwhile.
      const at = Date.now();
      await store.updateJob(record.id, { canceled_at: at, cancel_requested_at: at });
      if (await queue.removeIfWaiting(record.engine, record.id)) {
        record.canceled_at = at;
        logger.info({ job_id: record.id }, 'queued job canceled');
        await this.deps.events.publish(record.id, 'removed');
        return this.describe(record, undefined);
      }
      // Gone from the queue: a concurrent cancel removed it (its mark stands: never unmarked into "failed").
      if (!(await queue.snapshot(record.engine, record.id))) {
        record.canceled_at = at;
        return this.describe(record, undefined);
      }
      await store.updateJob(record.id, { canceled_at: 0 });
      // It started meanwhile: stopped like a running job. Should it finish anyway, it is not charged.
    }
    record.cancel_requested_at = Date.now();
    await store.updateJob(record.id, { cancel_requested_at: record.cancel_requested_at });
    await queue.signalCancel(record.engine, record.id);
    logger.info({ job_id: record.id }, 'running job asked to cancel');
    return this.describe(record);
  }

  /** Listens to one job's queue events (SSE); returns the function that stops listening. */
  subscribe(jobId: string, listener: Parameters<JobQueue['subscribe']>[1]): () => void {
    return this.deps.queue.subscribe(jobId, listener);
  }

  /** The bytes of a stored image, for Stability-style answers (held only for the request). */
  readArtifact(key: string): Promise<Buffer> {
    return this.deps.storage.get(key);
  }

  /**
   * Fails the queued jobs that have waited longer than timeoutMs while no live worker serves their
   * engine, and at once those of an engine that failed to load on the workers that tried (they would
   * wait for nothing): their hold is released, they leave the queue, and they read as failed with
   * engine_unavailable. So a job is never stuck for ever behind an engine nobody serves. Returns how many.
   */
  async failUnserved(presence: { workers(engine: string): Promise<number>; stateOf(engine: string): Promise<{ state: string }> }, timeoutMs: number, now = Date.now()): Promise<number> {
    let failed = 0;
    for (const engine of this.deps.queue.engineIds) {
      if ((await presence.workers(engine)) > 0) continue;
      const broken = (await presence.stateOf(engine)).state === 'failed';
      failed += await this.failWaiting(engine, broken ? now + 1 : now - timeoutMs, now, broken ? 'its engine failed to load on every worker that tried' : 'no live worker serves its engine');
    }
    return failed;
  }

  /**
   * Fails every queued job of an engine taken away (its folder removed from MODELS_DIR): released and out
   * of its queue as unserved jobs are, at once. Running ones finish. Returns how many.
   */
  async failEngineRemoved(engine: string, now = Date.now()): Promise<number> {
    let failed = 0;
    // a page at a time: failed jobs leave the wait list
    for (let n; (n = await this.failWaiting(engine, now + 1, now, 'its engine was removed')) > 0; ) failed += n;
    return failed;
  }

  /** Fails the jobs of an engine waiting since before `before` (engine_unavailable, credits released). */
  private async failWaiting(engine: string, before: number, now: number, why: string): Promise<number> {
    const { queue, store, charge, logger } = this.deps;
    let failed = 0;
    for (const id of await queue.waitingSince(engine, before)) {
      const record = await store.getJob(id);
      if (!record) continue;
      // Released before removal, as a cancel is: a worker that takes it in between settles nothing.
      if ((await charge.released(id, 'engine_unavailable')).status === 'already_settled') continue;
      // Marked before removal: a reader between the two would see a job gone without its reason.
      await store.updateJob(id, { unserved_at: now });
      if (!(await queue.removeIfWaiting(engine, id))) {
        // a worker took it meanwhile: not unserved after all
        await store.updateJob(id, { unserved_at: 0 });
        continue;
      }
      logger.warn({ job_id: id, engine }, `queued job failed: ${why}`);
      await this.deps.events.publish(id, 'removed');
      failed++;
    }
    return failed;
  }

  /** Removes jobs whose retention has passed, with their stored objects; returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    const { store, queue, storage, config, logger } = this.deps;
    let removed = 0;
    for (const id of await store.jobsDueForExpiry(now, 100)) {
      const record = await store.getJob(id);
      if (record) {
        const status = this.status(record, await this.snapshot(record));
        // A job still queued or running keeps its record until it has finished and aged.
        if (!TERMINAL_STATUSES.has(status)) {
          await store.postponeExpiry(id, now + config.resultRetention * 1000);
          continue;
        }
        // Close the hold before the job that decides it disappears (usually long closed: a no-op).
        await this.closeHold(id, { record });
        for (const prefix of jobKeyPrefixes(id)) await storage.deletePrefix(prefix);
        await queue.remove(record.engine, id);
      }
      await this.deps.webhooks?.removeJob(id);
      await store.deleteJob(id);
      removed++;
      logger.info({ job_id: id }, 'job expired and removed');
    }
    return removed;
  }
}
