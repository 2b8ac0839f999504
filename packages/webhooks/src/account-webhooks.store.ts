/**
 * Per account: the signing secret (with rotation) and the default webhook URL.
 *
 * Secrets are kept as they are, not hashed: HMAC signing needs the key itself (as with every Standard
 * Webhooks sender). They leave this module only towards the signer and GET /v1/webhooks/secret.
 */
import type { Redis } from 'ioredis';
import { webhookKeys, type WebhookKeys } from './keys';
import { LuaScript } from '@sdq/contracts';
import { generateSecret } from './signing';

const rotateSecret = LuaScript.load(new URL('./rotate-secret.lua', import.meta.url));
const disableDefault = LuaScript.load(new URL('./disable-default-webhook.lua', import.meta.url));

export interface AccountWebhooksOptions {
  /** How long a replaced secret keeps signing after rotate(), in ms; default 24 h. */
  graceMs?: number;
  /** Replaced secrets kept at most (each adds a signature to every delivery); default 5. */
  maxPreviousSecrets?: number;
}

export interface RotatedSecret {
  secret: string;
  /** ISO 8601: until when the replaced secret still signs; null when there was none. */
  previous_valid_until: string | null;
}

export interface DefaultWebhook {
  url: string;
  /** False once disabled (a 410 Gone from the receiver); setting a URL again enables it. */
  enabled: boolean;
  updated_at: string;
  disabled_at: string | null;
  disabled_reason: string | null;
}

export const DEFAULT_SECRET_GRACE_MS = 24 * 3_600_000;

export class AccountWebhooks {
  private readonly keys: WebhookKeys;
  private readonly graceMs: number;
  private readonly maxPrevious: number;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    { graceMs = DEFAULT_SECRET_GRACE_MS, maxPreviousSecrets = 5 }: AccountWebhooksOptions = {},
  ) {
    this.keys = webhookKeys(prefix);
    this.graceMs = graceMs;
    this.maxPrevious = maxPreviousSecrets;
  }

  /** The account's current secret, made on first use. */
  async secret(accountId: string): Promise<string> {
    const key = this.keys.account(accountId);
    const existing = await this.redis.hget(key, 'secret');
    if (existing) return existing;
    // HSETNX: two processes making the first secret at once agree on one.
    await this.redis.hsetnx(key, 'secret', generateSecret());
    await this.redis.hsetnx(key, 'secret_created_at', String(Date.now()));
    return (await this.redis.hget(key, 'secret'))!;
  }

  /** A new current secret; the replaced one keeps signing until the grace period ends. */
  async rotate(accountId: string): Promise<RotatedSecret> {
    const secret = generateSecret();
    const now = Date.now();
    const until = now + this.graceMs;
    const replaced = await rotateSecret.run(this.redis, [this.keys.account(accountId), this.keys.previousSecrets(accountId)], [secret, now, until, this.maxPrevious]);
    return { secret, previous_valid_until: replaced === 1 && this.graceMs > 0 ? new Date(until).toISOString() : null };
  }

  /** The secrets a delivery is signed with now: the current one first, then those still in their grace period. */
  async signingSecrets(accountId: string): Promise<string[]> {
    const current = await this.secret(accountId);
    const previous = await this.redis.zrevrangebyscore(this.keys.previousSecrets(accountId), '+inf', `(${Date.now()}`);
    return [current, ...previous.filter((s) => s !== current)];
  }

  /** Sets (and enables) the account's default webhook URL; validate it first (validateWebhookUrl). */
  async setDefaultWebhook(accountId: string, url: string): Promise<DefaultWebhook> {
    const key = this.keys.account(accountId);
    const updatedAt = new Date().toISOString();
    await this.redis.multi().hset(key, { url, url_updated_at: updatedAt }).hdel(key, 'url_disabled_at', 'url_disabled_reason').exec();
    return { url, enabled: true, updated_at: updatedAt, disabled_at: null, disabled_reason: null };
  }

  async getDefaultWebhook(accountId: string): Promise<DefaultWebhook | undefined> {
    const [url, updatedAt, disabledAt, reason] = await this.redis.hmget(this.keys.account(accountId), 'url', 'url_updated_at', 'url_disabled_at', 'url_disabled_reason');
    if (!url) return undefined;
    return { url, enabled: !disabledAt, updated_at: updatedAt ?? '', disabled_at: disabledAt ?? null, disabled_reason: reason ?? null };
  }

  /**
   * Disables the default webhook (deliveries stop using it) without forgetting it.
   * @param opts.ifUrl only if this is still the URL set: a 410 from an old URL must not disable a new one.
   * @returns true when it was disabled by this call.
   */
  async disableDefaultWebhook(accountId: string, { reason, ifUrl }: { reason: string; ifUrl?: string }): Promise<boolean> {
    const result = await disableDefault.run(this.redis, [this.keys.account(accountId)], [ifUrl ?? '', new Date().toISOString(), reason]);
    return result === 1;
  }

  async removeDefaultWebhook(accountId: string): Promise<void> {
    await this.redis.hdel(this.keys.account(accountId), 'url', 'url_updated_at', 'url_disabled_at', 'url_disabled_reason');
  }

  /** Forgets everything about an account's webhooks (account deletion). */
  async removeAccount(accountId: string): Promise<void> {
    await this.redis.del(this.keys.account(accountId), this.keys.previousSecrets(accountId));
  }
}
