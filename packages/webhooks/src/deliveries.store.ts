/**
 * The delivery log: every delivery of a job's events, and every attempt of each, for
 * GET /v1/jobs/{id}/webhooks, and what a redelivery needs (URL, body, webhook-id).
 *
 * A delivery is one event sent to one URL: its webhook-id stays the same over all its attempts (and over
 * a redelivery, so receivers can de-duplicate). Keys expire after the retention period as a safety net;
 * the API's job sweep removes them with the job (removeJob).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { DeliveryErrorCode, DeliveryResult } from './deliver';
import type { WebhookEventType } from './events';
import { webhookKeys, type WebhookKeys } from './keys';
import type { NextAttempt, StopReason } from './retry-policy';

export type DeliveryState =
  /** Queued, not attempted yet. */
  | 'pending'
  /** Attempted, failed, another attempt scheduled (next_retry_at). */
  | 'retrying'
  | 'succeeded'
  /** Given up: attempts exhausted, 410 Gone or refused by the SSRF check. */
  | 'failed'
  /** Not sent: a progress event overtaken by the job's completion. */
  | 'skipped';

/** Where the URL came from: the job's own `webhook`, or the account's default. */
export type WebhookSource = 'job' | 'account';

/** A delivery as stored (internal: holds the full URL and the body). Times are Unix ms. */
export interface DeliveryRecord {
  id: string;
  jobId: string;
  accountId: string;
  event: WebhookEventType;
  webhookId: string;
  url: string;
  source: WebhookSource;
  body: string;
  state: DeliveryState;
  attempts: number;
  createdAt: number;
  redeliveryOf?: string;
  lastStatus?: number;
  lastError?: DeliveryErrorCode;
  lastDurationMs?: number;
  lastAttemptAt?: number;
  nextRetryAt?: number;
  finalReason?: StopReason | 'superseded';
}

/** One attempt, as GET /v1/jobs/{id}/webhooks shows it. */
export interface AttemptView {
  attempt: number;
  at: string;
  status: number | null;
  error: DeliveryErrorCode | null;
  duration_ms: number;
  next_retry_at: string | null;
  /** The start of the receiver's answer (at most the delivery's response limit). */
  response: string;
}

/** A delivery as GET /v1/jobs/{id}/webhooks shows it. */
export interface DeliveryView {
  id: string;
  event: WebhookEventType;
  webhook_id: string;
  /** Query values masked: the client's URL may carry a token there. */
  url: string;
  state: DeliveryState;
  attempts: number;
  /** Of the last attempt. */
  status: number | null;
  error: DeliveryErrorCode | null;
  duration_ms: number | null;
  last_attempt_at: string | null;
  next_retry_at: string | null;
  /** Why it stopped (delivered, gone, ssrf_refused, attempts_exhausted, superseded); null while going on. */
  final_reason: string | null;
  created_at: string;
  redelivery_of: string | null;
  history: AttemptView[];
}

export interface NewDelivery {
  jobId: string;
  accountId: string;
  event: WebhookEventType;
  url: string;
  source: WebhookSource;
  body: string;
  /** Given for a redelivery (the original's); otherwise a new one is made. */
  webhookId?: string;
  redeliveryOf?: string;
  /**
   * Makes creation idempotent: a second create with the same key for the job returns the first delivery
   * (two API processes seeing the same job event, or an event emitted again after a crash).
   */
  eventKey?: string;
}

export const DEFAULT_LOG_RETENTION_MS = 7 * 24 * 3_600_000;

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

export class DeliveryLog {
  private readonly keys: WebhookKeys;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    /** How long delivery records live without a sweep, in ms; default 7 days. */
    private readonly retentionMs = DEFAULT_LOG_RETENTION_MS,
  ) {
    this.keys = webhookKeys(prefix);
  }

  /** Records a new delivery; `created` is false when `eventKey` named an existing one, which is returned. */
  async create(input: NewDelivery): Promise<{ record: DeliveryRecord; created: boolean }> {
    if (input.eventKey) {
      const existing = await this.byEventKey(input.jobId, input.eventKey);
      if (existing) return { record: existing, created: false };
    }
    const record: DeliveryRecord = {
      id: newId('dlv'),
      jobId: input.jobId,
      accountId: input.accountId,
      event: input.event,
      webhookId: input.webhookId ?? newId('msg'),
      url: input.url,
      source: input.source,
      body: input.body,
      state: 'pending',
      attempts: 0,
      createdAt: Date.now(),
      redeliveryOf: input.redeliveryOf,
    };
    const deliveryKey = this.keys.delivery(record.id);
    const multi = this.redis
      .multi()
      .hset(deliveryKey, toHash(record))
      .pexpire(deliveryKey, this.retentionMs)
      .rpush(this.keys.jobDeliveries(input.jobId), record.id)
      .pexpire(this.keys.jobDeliveries(input.jobId), this.retentionMs);
    if (input.eventKey) {
      // In the same transaction as the record, so an index entry never names a record not yet written.
      multi.hsetnx(this.keys.jobEvents(input.jobId), input.eventKey, record.id).pexpire(this.keys.jobEvents(input.jobId), this.retentionMs);
    }
    const results = await multi.exec();
    if (!input.eventKey || results?.[4]?.[1] === 1) return { record, created: true };

    // Another delivery holds the key: withdraw this one and return that.
    await this.redis.multi().del(deliveryKey).lrem(this.keys.jobDeliveries(input.jobId), 0, record.id).exec();
    const existing = await this.byEventKey(input.jobId, input.eventKey);
    if (!existing) throw new Error(`delivery for ${input.eventKey} of job ${input.jobId} vanished while being created`);
    return { record: existing, created: false };
  }

  private async byEventKey(jobId: string, eventKey: string): Promise<DeliveryRecord | undefined> {
    const id = await this.redis.hget(this.keys.jobEvents(jobId), eventKey);
    return id ? this.get(id) : undefined;
  }

  async get(deliveryId: string): Promise<DeliveryRecord | undefined> {
    const hash = await this.redis.hgetall(this.keys.delivery(deliveryId));
    return hash.id ? fromHash(hash) : undefined;
  }

  /** Records one finished attempt and what follows it. */
  async recordAttempt(deliveryId: string, attempt: number, result: DeliveryResult, next: NextAttempt, at = Date.now()): Promise<void> {
    const nextRetryAt = next.retry ? at + next.delayMs : undefined;
    const state: DeliveryState = result.ok ? 'succeeded' : next.retry ? 'retrying' : 'failed';
    const view: AttemptView = {
      attempt,
      at: new Date(at).toISOString(),
      status: result.status ?? null,
      error: result.error ?? null,
      duration_ms: result.durationMs,
      next_retry_at: nextRetryAt ? new Date(nextRetryAt).toISOString() : null,
      response: result.responseSnippet,
    };
    const key = this.keys.delivery(deliveryId);
    const fields: Record<string, string> = { state, attempts: String(attempt), lastDurationMs: String(result.durationMs), lastAttemptAt: String(at) };
    if (result.status !== undefined) fields.lastStatus = String(result.status);
    if (result.error) fields.lastError = result.error;
    if (nextRetryAt) fields.nextRetryAt = String(nextRetryAt);
    if (!next.retry) fields.finalReason = next.reason;
    const clear = ['lastStatus', 'lastError', 'nextRetryAt'].filter((f) => !(f in fields));
    const multi = this.redis.multi().hset(key, fields);
    if (clear.length) multi.hdel(key, ...clear);
    await multi
      .rpush(this.keys.attempts(deliveryId), JSON.stringify(view))
      .pexpire(key, this.retentionMs)
      .pexpire(this.keys.attempts(deliveryId), this.retentionMs)
      .exec();
  }

  /** Ends a delivery without an attempt (a superseded progress event). */
  async skip(deliveryId: string, reason: 'superseded'): Promise<void> {
    await this.redis.hset(this.keys.delivery(deliveryId), { state: 'skipped', finalReason: reason });
  }

  /** A job's deliveries, oldest first, with their attempts. */
  async list(jobId: string): Promise<DeliveryView[]> {
    const ids = await this.redis.lrange(this.keys.jobDeliveries(jobId), 0, -1);
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.delivery(id)).lrange(this.keys.attempts(id), 0, -1);
    const results = (await pipeline.exec()) ?? [];
    const views: DeliveryView[] = [];
    for (let i = 0; i < ids.length; i++) {
      const hash = results[2 * i]?.[1] as Record<string, string> | undefined;
      const attempts = (results[2 * i + 1]?.[1] as string[] | undefined) ?? [];
      if (hash?.id) views.push(toView(fromHash(hash), attempts.map((a) => JSON.parse(a) as AttemptView)));
    }
    return views;
  }

  /** Removes a job's deliveries (the retention sweep, with the job). */
  async removeJob(jobId: string): Promise<void> {
    const ids = await this.redis.lrange(this.keys.jobDeliveries(jobId), 0, -1);
    const keys = ids.flatMap((id) => [this.keys.delivery(id), this.keys.attempts(id)]);
    await this.redis.del(...keys, this.keys.jobDeliveries(jobId), this.keys.jobEvents(jobId));
  }
}

/** A URL with its query values masked, for views; the host and path stay. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    for (const key of new Set(parsed.searchParams.keys())) parsed.searchParams.set(key, '***');
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '';
  }
}

function toView(record: DeliveryRecord, history: AttemptView[]): DeliveryView {
  const iso = (ms?: number) => (ms === undefined ? null : new Date(ms).toISOString());
  return {
    id: record.id,
    event: record.event,
    webhook_id: record.webhookId,
    url: redactUrl(record.url),
    state: record.state,
    attempts: record.attempts,
    status: record.lastStatus ?? null,
    error: record.lastError ?? null,
    duration_ms: record.lastDurationMs ?? null,
    last_attempt_at: iso(record.lastAttemptAt),
    next_retry_at: iso(record.nextRetryAt),
    final_reason: record.finalReason ?? null,
    created_at: new Date(record.createdAt).toISOString(),
    redelivery_of: record.redeliveryOf ?? null,
    history,
  };
}

function toHash(record: DeliveryRecord): Record<string, string> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
}

function fromHash(h: Record<string, string>): DeliveryRecord {
  const num = (v?: string) => (v === undefined ? undefined : Number(v));
  return {
    id: h.id,
    jobId: h.jobId,
    accountId: h.accountId,
    event: h.event as WebhookEventType,
    webhookId: h.webhookId,
    url: h.url,
    source: h.source as WebhookSource,
    body: h.body,
    state: h.state as DeliveryState,
    attempts: Number(h.attempts ?? 0),
    createdAt: Number(h.createdAt),
    redeliveryOf: h.redeliveryOf,
    lastStatus: num(h.lastStatus),
    lastError: h.lastError as DeliveryErrorCode | undefined,
    lastDurationMs: num(h.lastDurationMs),
    lastAttemptAt: num(h.lastAttemptAt),
    nextRetryAt: num(h.nextRetryAt),
    finalReason: h.finalReason as DeliveryRecord['finalReason'],
  };
}
