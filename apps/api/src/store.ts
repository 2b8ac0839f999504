/**
 * The API's records in Redis: accounts and API keys, over the job records of @sdq/jobs. The only module
 * besides queue.ts that talks to Redis. Keys live under the queue prefix (`<prefix>:account:<id>`, ...),
 * so one Redis can hold several deployments or test files.
 *
 * The client fails fast: while Redis is down every call rejects at once and the error handler answers
 * 503; it reconnects by itself when Redis returns.
 */
import { createHash, randomBytes } from 'node:crypto';
import { DEFAULT_KEY_SCOPE, KEY_SCOPES, type KeyScope, ServiceError } from '@sdq/contracts';
import type { Redis } from 'ioredis';
import { failFastRedis, JobRecords } from '@sdq/jobs';

export type { JobRecord } from '@sdq/jobs';

/** An account. Its balance is not here: it is the sum of its ledger (@sdq/credits). */
export interface Account {
  id: string;
  name: string;
  created_at: string;
  /** Given by the operator at creation; "" when none was. */
  email: string;
  /** Its priority tier; "" = the default tier (DEFAULT_TIER). */
  tier: string;
  /** Its safety mode (blur, black, refuse, flag, off); "" = SAFETY_MODE. */
  safety_mode: string;
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

/** How long a key's lookup is remembered by an API process that missed the message of its revocation. */
const KEY_CACHE_MS = 5000;

type KeyLookup = { accountId: string; keyId: string; scope: KeyScope };

/** The job records (@sdq/jobs, shared with the webhook delivery process) and the API's own accounts and keys. */
export class Store extends JobRecords {
  /** Valid keys' lookups by hash (enableKeyCache); every revocation removes its entry in every process. */
  private keyCache?: Map<string, { found: KeyLookup; until: number }>;
  private subscriber?: Redis;
  private keyCacheLive = false;

  constructor(redisUrl: string, prefix: string, timeoutMs: number) {
    super(failFastRedis(redisUrl, timeoutMs), prefix);
  }

  /**
   * Remembers valid keys for up to KEY_CACHE_MS, so most requests skip the lookup. A revocation (from
   * any process, the CLI included) is published, and each caching process drops the key at once; only a
   * process whose subscription was down at that moment can accept the key for the rest of its entry's
   * life. Unknown keys are never remembered.
   */
  enableKeyCache(): void {
    const cache = new Map<string, { found: KeyLookup; until: number }>();
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: false, lazyConnect: true });
    const channel = this.k('keys-revoked');
    subscriber.on('error', () => {});
    subscriber.on('message', (_channel, hash: string) => cache.delete(hash));
    // uncached until the subscription holds, and again from the moment it drops until it holds again
    subscriber.on('close', () => {
      this.keyCacheLive = false;
      cache.clear();
    });
    subscriber.on('ready', () => {
      subscriber.subscribe(channel).then(
        () => (this.keyCacheLive = true),
        () => {},
      );
    });
    this.subscriber = subscriber;
    this.keyCache = cache;
    // not awaited: with Redis down at start the API starts anyway, uncached
    subscriber.connect().catch(() => {});
  }

  override async close(): Promise<void> {
    this.subscriber?.disconnect();
    await super.close();
  }

  // --- accounts and keys -------------------------------------------------------------------------

  /** `id` may be chosen beforehand (newId('acct')), so that its starting grant can be made first. */
  async createAccount(name: string, id = newId('acct'), email = '', tier = ''): Promise<Account> {
    const account: Account = { id, name, created_at: new Date().toISOString(), email, tier, safety_mode: '' };
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
    return { id: h.id, name: h.name, created_at: h.created_at, email: h.email ?? '', tier: h.tier ?? '', safety_mode: h.safety_mode ?? '' };
  }

  /** The account's tier and safety mode ("" = the defaults), in one round trip: read on every submission. */
  async accountSettings(id: string): Promise<{ tier: string; safetyMode: string }> {
    const [tier, safetyMode] = await this.redis.hmget(this.k('account', id), 'tier', 'safety_mode');
    return { tier: tier ?? '', safetyMode: safetyMode ?? '' };
  }

  /** "" goes back to SAFETY_MODE. */
  async setAccountSafety(id: string, mode: string): Promise<void> {
    await this.redis.hset(this.k('account', id), 'safety_mode', mode);
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
  /**
   * By id, else by its exact name. A name several accounts share (the admin API allows it) names none:
   * refused with their ids, never one of them picked.
   */
  async findAccount(idOrName: string): Promise<Account | undefined> {
    const byId = await this.getAccount(idOrName);
    if (byId) return byId;
    const named = await this.accountsNamed(idOrName);
    if (named.length > 1) throw new ServiceError('conflict', `account name ${JSON.stringify(idOrName)} names ${named.length} accounts (${named.map((a) => a.id).join(', ')}): use the id`);
    return named[0];
  }

  async accountsNamed(name: string): Promise<Account[]> {
    return (await this.listAccounts()).filter((a) => a.name === name);
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
    // published: every API process that has the key cached drops it at once
    await this.redis.multi().hset(this.k('key', id), 'revoked_at', revokedAt).del(this.k('keyhash', h.hash)).publish(this.k('keys-revoked'), h.hash).exec();
    return { id: h.id, account_id: h.account_id, created_at: h.created_at, revoked_at: revokedAt, hint: h.hint, scope: toScope(h.scope) };
  }

  /** The account and scope of a valid, unrevoked key (cached per process for 5 s; a revocation drops it everywhere at once). */
  async authenticate(apiKey: string): Promise<KeyLookup | undefined> {
    const hash = hashApiKey(apiKey);
    const cache = this.keyCacheLive ? this.keyCache : undefined;
    const now = Date.now();
    const hit = cache?.get(hash);
    if (hit && hit.until > now) return hit.found;
    const stored = await this.redis.get(this.k('keyhash', hash));
    if (!stored) {
      cache?.delete(hash);
      return undefined;
    }
    const [accountId, keyId, scope] = stored.split(' ');
    const found = { accountId, keyId, scope: toScope(scope) };
    if (cache) {
      if (cache.size >= 10_000) cache.clear();
      cache.set(hash, { found, until: now + KEY_CACHE_MS });
    }
    return found;
  }

  /** An API key's default engine (A1111's sd_model_checkpoint option), if it set one. */
  async keyDefaultEngine(keyId: string): Promise<string | undefined> {
    return (await this.redis.hget(this.k('a1111-options', keyId), 'sd_model_checkpoint')) ?? undefined;
  }

  async setKeyDefaultEngine(keyId: string, engineId: string): Promise<void> {
    await this.redis.hset(this.k('a1111-options', keyId), 'sd_model_checkpoint', engineId);
  }
}
