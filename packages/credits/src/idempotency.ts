/**
 * Idempotency-Key for POSTs that create jobs, after Stripe's: the same key and the same body within 24 h
 * give back the first request's job (one job, one charge); the same key with another body is refused;
 * a retry that arrives while the first request is still being accepted waits for it or is told so.
 *
 *   const claim = await idempotency.begin(accountId, key, hashBody(body), { waitMs: 2000 });
 *   switch (claim.status) {
 *     case 'done': return the job claim.job_id;                       // charged once, by the first
 *     case 'mismatch': 422; case 'in_progress': 409;
 *     case 'new': try { create the job; await idempotency.complete(accountId, key, jobId, claim.token) }
 *                 catch (e) { await idempotency.abort(accountId, key, claim.token); throw e }
 *   }
 *
 * Keys are stored as their SHA-256 (a client's key never appears in Redis, errors or logs).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { creditKeys, type CreditKeys } from './keys';
import { LuaScript } from '@sdq/contracts';

export type IdempotencyBegin =
  | { status: 'new'; token: string }
  | { status: 'done'; job_id: string }
  | { status: 'mismatch' }
  | { status: 'in_progress' };

export interface IdempotencyStoreOptions {
  prefix: string;
  /** How long a completed key answers with its job, ms. Default 24 h. */
  ttlMs?: number;
  /** How long a claim lasts if its request dies before completing or aborting, ms. Default 60 s. */
  pendingTtlMs?: number;
}

/** Longest Idempotency-Key accepted (Stripe's limit). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

const BEGIN = LuaScript.load(new URL('./idempotency-begin.lua', import.meta.url));
const FINISH = LuaScript.load(new URL('./idempotency-finish.lua', import.meta.url));

/** A caller's Idempotency-Key that cannot be used (empty or too long); the API answers 400. */
export class InvalidIdempotencyKeyError extends Error {
  readonly code = 'invalid_idempotency_key';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidIdempotencyKeyError';
  }
}

export class IdempotencyStore {
  private readonly keys: CreditKeys;
  private readonly ttlMs: number;
  private readonly pendingTtlMs: number;

  constructor(
    private readonly redis: Redis,
    opts: IdempotencyStoreOptions,
  ) {
    this.keys = creditKeys(opts.prefix);
    this.ttlMs = opts.ttlMs ?? 24 * 3600_000;
    this.pendingTtlMs = opts.pendingTtlMs ?? 60_000;
  }

  /**
   * Claims `key` for a request whose body hashes to `bodyHash`, or reports the first request's fate.
   * With `waitMs` (default 0), an 'in_progress' answer is retried every `pollMs` (default 50) until the
   * first request finishes or the time is up; if it aborted meanwhile, this request gets the claim.
   */
  async begin(accountId: string, key: string, bodyHash: string, opts: { waitMs?: number; pollMs?: number } = {}): Promise<IdempotencyBegin> {
    const claimKey = this.claimKey(accountId, key);
    const deadline = Date.now() + (opts.waitMs ?? 0);
    for (;;) {
      const token = randomBytes(16).toString('hex');
      const reply = (await BEGIN.run(this.redis, [claimKey], [bodyHash, token, this.pendingTtlMs])) as string[];
      switch (reply[0]) {
        case 'new':
          return { status: 'new', token };
        case 'done':
          return { status: 'done', job_id: reply[1] };
        case 'mismatch':
          return { status: 'mismatch' };
        case 'in_progress':
          if (Date.now() >= deadline) return { status: 'in_progress' };
          await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 50, Math.max(1, deadline - Date.now()))));
          break;
        default:
          throw new Error(`idempotency begin: unexpected reply from Redis: ${JSON.stringify(reply)}`);
      }
    }
  }

  /** Records the job the claimed request created; false if the claim was no longer the caller's. */
  async complete(accountId: string, key: string, jobId: string, token: string): Promise<boolean> {
    return (await FINISH.run(this.redis, [this.claimKey(accountId, key)], ['complete', token, jobId, this.ttlMs])) === 1;
  }

  /** Frees the key after the claimed request failed without creating a job; false if not the caller's. */
  async abort(accountId: string, key: string, token: string): Promise<boolean> {
    return (await FINISH.run(this.redis, [this.claimKey(accountId, key)], ['abort', token, '', 0])) === 1;
  }

  private claimKey(accountId: string, key: string): string {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new InvalidIdempotencyKeyError(`Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters (got ${key?.length ?? 0})`);
    }
    return this.keys.idempotency(accountId, createHash('sha256').update(key).digest('hex'));
  }
}

/** How deep hashBody follows a body. */
export const MAX_HASH_DEPTH = 64;

/**
 * A request body's fingerprint for begin(): SHA-256 of a canonical form (object keys sorted, Buffers as
 * their bytes), so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same body. For multipart requests pass
 * the fields and the files together: `hashBody({ fields, init_image: buffer })`.
 */
export function hashBody(body: unknown, maxDepth = MAX_HASH_DEPTH): string {
  const hash = createHash('sha256');
  const write = (value: unknown, depth = 0): void => {
    // The caller should have refused such a body already; a cap here keeps the recursion off the stack's end.
    if (depth > maxDepth) throw new InvalidIdempotencyKeyError(`the request body nests deeper than ${maxDepth} levels and cannot be fingerprinted`);
    if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
      hash.update(`b${value.byteLength}:`);
      hash.update(value);
    } else if (Array.isArray(value)) {
      hash.update(`a${value.length}[`);
      for (const item of value) write(item, depth + 1);
      hash.update(']');
    } else if (value !== null && typeof value === 'object') {
      const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      hash.update(`o${entries.length}{`);
      for (const [k, v] of entries) {
        hash.update(JSON.stringify(k));
        write(v, depth + 1);
      }
      hash.update('}');
    } else {
      hash.update(`v${JSON.stringify(value) ?? 'undefined'};`);
    }
  };
  write(body);
  return hash.digest('hex');
}
