/**
 * What one key may hold open in this API process at once, and what all of them may: event streams
 * (each a socket and a file descriptor for as long as it stays open) and JSON bodies that carry base64
 * images (each held in memory several times over while it is parsed and decoded). Past a key's or an
 * account's share the answer is 429 with Retry-After; past the process's total, 503 with Retry-After.
 */
import type { RequestHandler } from 'express';
import { ServiceError } from '@sdq/contracts';
import { failMidBody } from './uploads';

export interface SlotLimits {
  perKey: number;
  perAccount: number;
  /** Units in all (streams, or bytes). */
  total: number;
}

/** Counts of what is open, by key, by account and in total; `take` refuses past a limit. */
export class Slots {
  private readonly keys = new Map<string, number>();
  private readonly accounts = new Map<string, number>();
  private all = 0;

  constructor(
    private readonly limits: SlotLimits,
    /** How the refusal names the limits: [what, per-key variable, per-account variable, total variable]. */
    private readonly names: { what: string; perKey: string; perAccount: string; total: string },
  ) {}

  get open(): number {
    return this.all;
  }

  /** Takes one slot of `units` for the key and account; the returned function gives it back (once). */
  take(keyId: string, accountId: string, units = 1): () => void {
    const { limits, names } = this;
    const byKey = this.keys.get(keyId) ?? 0;
    const byAccount = this.accounts.get(accountId) ?? 0;
    if (byKey >= limits.perKey) throw new ServiceError('rate_limited', `this API key has ${byKey} ${names.what} open already (${names.perKey}); retry when one ends`, { headers: { 'Retry-After': '5' } });
    if (byAccount >= limits.perAccount) throw new ServiceError('rate_limited', `this account has ${byAccount} ${names.what} open already (${names.perAccount}); retry when one ends`, { headers: { 'Retry-After': '5' } });
    if (this.all + units > limits.total) throw new ServiceError('service_unavailable', `the API has as many ${names.what} open as it takes (${names.total}); retry shortly`, { headers: { 'Retry-After': '2' } });
    this.keys.set(keyId, byKey + 1);
    this.accounts.set(accountId, byAccount + 1);
    this.all += units;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.all -= units;
      drop(this.keys, keyId);
      drop(this.accounts, accountId);
    };
  }
}

function drop(counts: Map<string, number>, id: string): void {
  const left = (counts.get(id) ?? 1) - 1;
  if (left > 0) counts.set(id, left);
  else counts.delete(id);
}

/**
 * Before a JSON body with base64 images is read: a slot for the key (MAX_UPLOADS_PER_KEY, as multipart
 * uploads) and its bytes from the process's budget (MAX_JSON_IMAGE_BYTES_IN_FLIGHT): the Content-Length,
 * or the route's limit for a chunked body. Given back when the answer is sent or the client goes.
 */
export function jsonImageBudget(slots: Slots, routeLimitBytes: number): RequestHandler {
  return (req, res, next) => {
    const declared = Number(req.headers['content-length']);
    const bytes = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, routeLimitBytes) : routeLimitBytes;
    let release: () => void;
    try {
      release = slots.take(req.keyId ?? req.accountId ?? '', req.accountId ?? '', bytes);
    } catch (err) {
      // the body is dropped unread (a little of it drained so the client can read the answer)
      return failMidBody(req, next, err as ServiceError);
    }
    res.once('finish', release);
    res.once('close', release);
    next();
  };
}
