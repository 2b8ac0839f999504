/**
 * The API's records in Redis: accounts, API keys and job records. The only module besides queue.ts that
 * talks to Redis. Keys live under the queue prefix (`<prefix>:account:<id>`, ...), so one Redis can hold
 * several deployments or test files.
 *
 * ioredis is set to fail fast (no offline queue, one retry): while Redis is down every call rejects at
 * once and the error handler answers 503, and the client reconnects by itself when Redis returns.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { DEFAULT_KEY_SCOPE, type JobKind, KEY_SCOPES, type KeyScope } from '@sdq/contracts';

/** An account. Its balance is not here: it is the sum of its ledger (@sdq/credits). */
export interface Account {
  id: string;
  name: string;
  created_at: string;
  /** Given by the operator at creation; "" when none was. */
  email: string;
  /** Its priority tier; "" = the default tier (DEFAULT_TIER). */
  tier: string;
}

export interface ApiKeyInfo {
  id: string;
  account_id: string;
  created_at: string;
  revoked_at: string | null;
  /** First characters of the key, to tell keys apart in listings; never enough to use. */
  hint: string;
  scope: KeyScope;
}

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
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function toScope(value: string | undefined): KeyScope {
  // Keys made before scopes existed have none: they keep what they could do, generate.
  return KEY_SCOPES.includes(value as KeyScope) ? (value as KeyScope) : DEFAULT_KEY_SCOPE;
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

export class Store {
  readonly redis: Redis;

  constructor(
    redisUrl: string,
    private readonly prefix: string,
    timeoutMs: number,
  ) {
    this.redis = new Redis(redisUrl, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      // Keep trying to reconnect, never more than a second apart, so recovery is quick.
      retryStrategy: (times) => Math.min(times * 100, 1000),
      lazyConnect: false,
    });
  }

  /** True while the connection is usable; requests are answered 503 at once otherwise. */
  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  private k(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  // --- accounts and keys -------------------------------------------------------------------------

  /** `id` may be chosen beforehand (newId('acct')), so that its starting grant can be made first. */
  async createAccount(name: string, id = newId('acct'), email = '', tier = ''): Promise<Account> {
    const account: Account = { id, name, created_at: new Date().toISOString(), email, tier };
    await this.redis
      .multi()
      .hset(this.k('account', account.id), { id: account.id, name, created_at: account.created_at, email, tier })
      .zadd(this.k('accounts'), String(Date.now()), account.id)
      .exec();
    return account;
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const h = await this.redis.hgetall(this.k('account', id));
    if (!h.id) return undefined;
    return { id: h.id, name: h.name, created_at: h.created_at, email: h.email ?? '', tier: h.tier ?? '' };
  }

  /** The account's tier ("" = the default), in one round trip: read on every submission. */
  async accountTier(id: string): Promise<string> {
    return (await this.redis.hget(this.k('account', id), 'tier')) ?? '';
  }

  async setAccountTier(id: string, tier: string): Promise<void> {
    await this.redis.hset(this.k('account', id), 'tier', tier);
  }

  /**
   * Accounts made before the ledger existed kept their starting credits in a `credits` field: these
   * are the ones still holding it, with the amount (decimal credits, as stored).
   */
  async legacyCredits(): Promise<{ id: string; credits: string }[]> {
    const ids = await this.redis.zrange(this.k('accounts'), '0', '-1');
    const values = await Promise.all(ids.map((id) => this.redis.hget(this.k('account', id), 'credits')));
    return ids.flatMap((id, i) => (values[i] === null ? [] : [{ id, credits: values[i]! }]));
  }

  /** Drops the legacy `credits` field once the ledger holds the grant. */
  async clearLegacyCredits(id: string): Promise<void> {
    await this.redis.hdel(this.k('account', id), 'credits');
  }

  async listAccounts(): Promise<Account[]> {
    const ids = await this.redis.zrange(this.k('accounts'), '0', '-1');
    const accounts = await Promise.all(ids.map((id) => this.getAccount(id)));
    return accounts.filter((a): a is Account => !!a);
  }

  /** Finds an account by id or, failing that, by exact name (for the CLI). */
  async findAccount(idOrName: string): Promise<Account | undefined> {
    const byId = await this.getAccount(idOrName);
    if (byId) return byId;
    return (await this.listAccounts()).find((a) => a.name === idOrName);
  }

  /** Makes a key; the plain key is returned once and only its SHA-256 is stored. */
  async createApiKey(accountId: string, scope: KeyScope = DEFAULT_KEY_SCOPE): Promise<{ key: ApiKeyInfo; apiKey: string }> {
    const apiKey = `sk-${randomBytes(32).toString('base64url')}`;
    const info: ApiKeyInfo = { id: newId('key'), account_id: accountId, created_at: new Date().toISOString(), revoked_at: null, hint: apiKey.slice(0, 7), scope };
    const hash = hashApiKey(apiKey);
    await this.redis
      .multi()
      .hset(this.k('key', info.id), { id: info.id, account_id: accountId, created_at: info.created_at, hint: info.hint, hash, scope })
      // The lookup by hash holds what authentication needs, so it takes one GET.
      .set(this.k('keyhash', hash), `${accountId} ${info.id} ${scope}`)
      .sadd(this.k('account', accountId, 'keys'), info.id)
      .exec();
    return { key: info, apiKey };
  }

  async listApiKeys(accountId: string): Promise<ApiKeyInfo[]> {
    const ids = await this.redis.smembers(this.k('account', accountId, 'keys'));
    const keys = await Promise.all(ids.map((id) => this.redis.hgetall(this.k('key', id))));
    return keys
      .filter((h) => h.id)
      .map((h) => ({ id: h.id, account_id: h.account_id, created_at: h.created_at, revoked_at: h.revoked_at ?? null, hint: h.hint, scope: toScope(h.scope) }))
      .sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  /** Revokes by key id or by the key itself; false when no such key. */
  async revokeApiKey(idOrKey: string): Promise<ApiKeyInfo | undefined> {
    let id = idOrKey;
    if (idOrKey.startsWith('sk-')) {
      const found = await this.redis.get(this.k('keyhash', hashApiKey(idOrKey)));
      if (!found) return undefined;
      id = found.split(' ')[1];
    }
    const h = await this.redis.hgetall(this.k('key', id));
    if (!h.id) return undefined;
    const revokedAt = h.revoked_at ?? new Date().toISOString();
    await this.redis.multi().hset(this.k('key', id), 'revoked_at', revokedAt).del(this.k('keyhash', h.hash)).exec();
    return { id: h.id, account_id: h.account_id, created_at: h.created_at, revoked_at: revokedAt, hint: h.hint, scope: toScope(h.scope) };
  }

  /** The account and scope of a valid, unrevoked key (revoking deletes the lookup: no cache to outlive it). */
  async authenticate(apiKey: string): Promise<{ accountId: string; keyId: string; scope: KeyScope } | undefined> {
    const found = await this.redis.get(this.k('keyhash', hashApiKey(apiKey)));
    if (!found) return undefined;
    const [accountId, keyId, scope] = found.split(' ');
    return { accountId, keyId, scope: toScope(scope) };
  }

  // --- job records -------------------------------------------------------------------------------

  /** Reserves a listing position for a new job. */
  async nextJobSeq(): Promise<number> {
    return this.redis.incr(this.k('job-seq'));
  }

  async saveJob(record: JobRecord, expiresAt: number): Promise<void> {
    await this.redis
      .multi()
      .hset(this.k('job', record.id), serialize(record))
      .zadd(this.k('account', record.account_id, 'jobs'), record.seq, record.id)
      .zadd(this.k('jobs-expiry'), expiresAt, record.id)
      // Until the delivery process has queued its job.completed webhook (or found none is wanted).
      .zadd(this.k('webhooks-pending'), record.created_at, record.id)
      .exec();
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

  /** A lease so that only one API process sweeps at a time; true when taken. */
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
  };
}
