/**
 * When to try a delivery again. Svix's schedule, which clients of webhook services have come to expect:
 * at once, then after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h, then give up (7 attempts over about 17.6 h),
 * each wait with +-10% jitter so that a receiver coming back up is not hit by every retry at once.
 *
 * A pure function of the attempt number and its result, so the delivery processor and a BullMQ backoff
 * strategy decide alike and the schedule is tested without clocks.
 */
import type { DeliveryResult } from './deliver';

/** Waits before attempts 2, 3, ... (ms). */
export const RETRY_DELAYS_MS: readonly number[] = [5_000, 5 * 60_000, 30 * 60_000, 2 * 3_600_000, 5 * 3_600_000, 10 * 3_600_000];
/** Attempts in all: the first and one per delay. */
export const MAX_ATTEMPTS = RETRY_DELAYS_MS.length + 1;
/** Each wait is drawn uniformly from delay * (1 +- JITTER). */
export const JITTER = 0.1;

export type StopReason =
  | 'delivered'
  /** 410 Gone: the receiver asked for no more; the caller disables the account's default webhook. */
  | 'gone'
  /** The target is in a refused range: it will stay refused. */
  | 'ssrf_refused'
  | 'invalid_url'
  /**
   * A 3xx: redirects are never followed (the target could be an internal address: an SSRF probe), and
   * asking the same URL again would get the same answer. The receiver must answer at the URL it gave.
   */
  | 'redirect'
  | 'attempts_exhausted';

export type NextAttempt = { retry: false; reason: StopReason } | { retry: true; delayMs: number };

/**
 * What follows attempt `attempt` (1 = the first) that ended with `result`.
 * @param random source of jitter in [0, 1); default Math.random.
 */
export function nextAttempt(
  attempt: number,
  result: Pick<DeliveryResult, 'ok' | 'status' | 'error'>,
  { delaysMs = RETRY_DELAYS_MS, random = Math.random }: { delaysMs?: readonly number[]; random?: () => number } = {},
): NextAttempt {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be an integer from 1 (got ${attempt})`);
  if (result.ok) return { retry: false, reason: 'delivered' };
  if (result.status === 410) return { retry: false, reason: 'gone' };
  if (result.error === 'ssrf_refused') return { retry: false, reason: 'ssrf_refused' };
  if (result.error === 'invalid_url') return { retry: false, reason: 'invalid_url' };
  if (result.error === 'redirect') return { retry: false, reason: 'redirect' };
  const delay = delaysMs[attempt - 1];
  if (delay === undefined) return { retry: false, reason: 'attempts_exhausted' };
  return { retry: true, delayMs: Math.round(delay * (1 - JITTER + 2 * JITTER * random())) };
}
