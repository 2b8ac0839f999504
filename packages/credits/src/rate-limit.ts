/**
 * A sliding-window rate limiter (Stability's limit: 150 requests per 10 s per key): a Redis sorted set
 * per subject holding the times of the requests of the last window, updated by one Lua script.
 * The subject is what is limited, e.g. the API key's id (never the key itself).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { creditKeys, type CreditKeys } from './keys';
import { LuaScript } from '@sdq/contracts';

export type RateLimitResult =
  | { allowed: true; limit: number; remaining: number }
  /** retry_after: whole seconds (for Retry-After), at least 1; retry_after_ms: the exact wait. */
  | { allowed: false; limit: number; retry_after: number; retry_after_ms: number };

export interface RateLimiterOptions {
  prefix: string;
  /** Requests allowed per window. Default 150. */
  limit?: number;
  /** Window length, ms. Default 10,000. */
  windowMs?: number;
}

const SCRIPT = LuaScript.load(new URL('./rate-limit.lua', import.meta.url));

export class RateLimiter {
  private readonly keys: CreditKeys;
  readonly limit: number;
  readonly windowMs: number;

  constructor(
    private readonly redis: Redis,
    opts: RateLimiterOptions,
  ) {
    this.keys = creditKeys(opts.prefix);
    this.limit = opts.limit ?? 150;
    this.windowMs = opts.windowMs ?? 10_000;
    for (const [name, value] of Object.entries({ limit: this.limit, windowMs: this.windowMs })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`rate limiter ${name} must be a positive integer (got ${value})`);
    }
  }

  /** Counts one request of `subject`: allowed, or refused with how long to wait. */
  async hit(subject: string): Promise<RateLimitResult> {
    const member = randomBytes(8).toString('hex');
    const [allowed, n] = (await SCRIPT.run(this.redis, [this.keys.rate(subject)], [this.windowMs, this.limit, member])) as [number, number];
    if (allowed === 1) return { allowed: true, limit: this.limit, remaining: n };
    return { allowed: false, limit: this.limit, retry_after: Math.max(1, Math.ceil(n / 1000)), retry_after_ms: n };
  }
}
