/**
 * Job records in Redis: what sdq knows of a job beyond its BullMQ entry (owner, engine, kind, listing
 * position, cancellation, webhook), the retention index and the webhooks-pending set. The API writes
 * them; the webhook delivery process reads them. Keys live under the queue prefix (`<prefix>:job:<id>`).
 *
 * The client fails fast (no offline queue, one retry): while Redis is down every call rejects at once,
 * and it reconnects by itself when Redis returns.
 */
import type { Redis } from 'ioredis';
import { createRedis, type JobKind } from '@sdq/contracts';

export interface JobRecord {
  id: string;
  account_id: string;
  engine: string;
  kind: JobKind;
  /** Unix ms. */
  created_at: number;
  /** Position in the global job sequence: the listing cursor. */
  seq: number;
  /** Unix ms; set when a cancellation was asked for. */
  cancel_requested_at?: number;
  /** Unix ms; set when the job was removed before it started. */
  canceled_at?: number;
  /** Unix ms; set when the job was removed unstarted because no live worker served its engine. */
  unserved_at?: number;
  /** The job's own webhook URL (checked at submission); unset = the account's default webhook, if any. */
  webhook?: string;
  /** Its webhook_events_filter, comma-separated; unset = completed only. */
  webhook_events?: string;
  /** jobParamsView of its payload, as JSON. */
  params?: string;
  /** The API key that submitted it (A1111's progress and interrupt act on the caller's own jobs). */
  key_id?: string;
  /**
   * What a dialect that answers in its own objects keeps of the request, as JSON `{name, ...}` (Replicate:
   * its model, version and input, to answer and to deliver webhooks as predictions).
   */
  dialect?: string;
}

/** A fail-fast client: what a web server (or anything answering for Redis) needs. */
export function failFastRedis(redisUrl: string, timeoutMs: number): Redis {
  return createRedis(redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    // Keep trying to reconnect, never more than a second apart, so recovery is quick.
    retryStrategy: (times) => Math.min(times * 100, 1000),
    lazyConnect: false,
    // Commands issued in one tick go out in one write: under load most of a request's Redis cost was
    // one socket write per command.
    enableAutoPipelining: true,
  });
}

/**
 * A new job's record in one round trip: its listing position (job-seq), the record, the account's
 * listing, the retention index and the webhooks-pending set. KEYS: job-seq, job, account jobs,
 * jobs-expiry, webhooks-pending; ARGV: expires-at, created-at, id, then the record's field/value pairs.
 * Returns the position.
 */
const SAVE_NEW_JOB = `
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'seq', seq, unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], seq, ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[3])
return seq
`;

type WithSaveNewJob = Redis & { sdqSaveNewJob(...args: (string | number)[]): Promise<number> };

export class JobRecords {
  constructor(
    readonly redis: Redis,
    protected readonly prefix: string,
  ) {
    if (!('sdqSaveNewJob' in redis)) redis.defineCommand('sdqSaveNewJob', { numberOfKeys: 5, lua: SAVE_NEW_JOB });
  }

  /** True while the connection is usable; requests are answered 503 at once otherwise. */
  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  protected k(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /** Saves a new job's record with the next listing position, which it returns (and sets on the record). */
  async saveNewJob(record: Omit<JobRecord, 'seq'> & { seq?: number }, expiresAt: number): Promise<number> {
    const { seq: _, ...fields } = record;
    const pairs = Object.entries(serialize(fields)).flat();
    const seq = await (this.redis as WithSaveNewJob).sdqSaveNewJob(
      this.k('job-seq'),
      this.k('job', record.id),
      this.k('account', record.account_id, 'jobs'),
      this.k('jobs-expiry'),
      this.k('webhooks-pending'),
      expiresAt,
      record.created_at,
      record.id,
      ...pairs,
    );
    record.seq = Number(seq);
    return record.seq;
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const h = await this.redis.hgetall(this.k('job', id));
    return h.id ? deserialize(h) : undefined;
  }

  async updateJob(id: string, fields: Partial<Pick<JobRecord, 'cancel_requested_at' | 'canceled_at' | 'unserved_at'>>): Promise<void> {
    await this.redis.hset(this.k('job', id), serialize(fields));
  }

  /** An account's jobs, newest first, after `beforeSeq` (exclusive). */
  async listJobs(accountId: string, limit: number, beforeSeq?: number): Promise<{ records: JobRecord[]; nextSeq?: number }> {
    const max = beforeSeq === undefined ? '+inf' : `(${beforeSeq}`;
    // One more than asked, to know whether a next page exists.
    const ids = await this.redis.zrevrangebyscore(this.k('account', accountId, 'jobs'), max, '-inf', 'LIMIT', 0, limit + 1);
    const page = ids.slice(0, limit);
    const records = (await Promise.all(page.map((id) => this.getJob(id)))).filter((r): r is JobRecord => !!r);
    return { records, nextSeq: ids.length > limit ? records[records.length - 1]?.seq : undefined };
  }

  /** Job ids whose retention ended before `now`. */
  async jobsDueForExpiry(now: number, count: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.k('jobs-expiry'), '-inf', now, 'LIMIT', 0, count);
  }

  async postponeExpiry(id: string, until: number): Promise<void> {
    await this.redis.zadd(this.k('jobs-expiry'), until, id);
  }

  async deleteJob(id: string): Promise<void> {
    const record = await this.getJob(id);
    const multi = this.redis.multi().del(this.k('job', id)).zrem(this.k('jobs-expiry'), id).zrem(this.k('webhooks-pending'), id);
    if (record) multi.zrem(this.k('account', record.account_id, 'jobs'), id);
    await multi.exec();
  }

  /** Ids of jobs whose job.completed webhook has not been dealt with yet, oldest first, from index `offset`. */
  async webhooksPending(offset: number, count: number): Promise<string[]> {
    return this.redis.zrange(this.k('webhooks-pending'), String(offset), String(offset + count - 1));
  }

  /** The job's job.completed webhook is queued (or none is wanted). */
  async webhookDone(id: string): Promise<void> {
    await this.redis.zrem(this.k('webhooks-pending'), id);
  }

  /** A lease so that only one process does a periodic chore at a time; true when taken. */
  async takeLease(name: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.k('lease', name), String(process.pid), 'PX', ttlMs, 'NX')) === 'OK';
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

function serialize(obj: object): Record<string, string> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
}

function deserialize(h: Record<string, string>): JobRecord {
  return {
    id: h.id,
    account_id: h.account_id,
    engine: h.engine,
    kind: h.kind as JobKind,
    created_at: Number(h.created_at),
    seq: Number(h.seq),
    cancel_requested_at: h.cancel_requested_at ? Number(h.cancel_requested_at) : undefined,
    canceled_at: h.canceled_at ? Number(h.canceled_at) : undefined,
    unserved_at: h.unserved_at ? Number(h.unserved_at) : undefined,
    webhook: h.webhook || undefined,
    webhook_events: h.webhook_events || undefined,
    dialect: h.dialect || undefined,
    params: h.params || undefined,
    key_id: h.key_id || undefined,
  };
}
