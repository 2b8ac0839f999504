import { describe, expect, it } from 'vitest';
import { DeliveryRetryError, webhookBackoffStrategy } from '../src/delivery.queue';
import { JITTER, MAX_ATTEMPTS, nextAttempt, RETRY_DELAYS_MS } from '../src/retry-policy';

const failed = { ok: false, status: 500, error: 'http_error' as const };
const S = 1000;
const M = 60 * S;
const H = 60 * M;

describe('nextAttempt', () => {
  it('follows the schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then gives up', () => {
    const middle = () => 0.5; // no jitter
    const waits = [1, 2, 3, 4, 5, 6].map((attempt) => nextAttempt(attempt, failed, { random: middle }));
    expect(waits).toEqual([5 * S, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H].map((delayMs) => ({ retry: true, delayMs })));
    expect(MAX_ATTEMPTS).toBe(7);
    expect(nextAttempt(7, failed)).toEqual({ retry: false, reason: 'attempts_exhausted' });
    expect(nextAttempt(8, failed)).toEqual({ retry: false, reason: 'attempts_exhausted' });
  });

  it('keeps every wait within +-10% of its step, and spreads them', () => {
    expect(JITTER).toBe(0.1);
    RETRY_DELAYS_MS.forEach((delay, i) => {
      const low = nextAttempt(i + 1, failed, { random: () => 0 });
      const high = nextAttempt(i + 1, failed, { random: () => 0.999999 });
      expect(low).toEqual({ retry: true, delayMs: Math.round(delay * 0.9) });
      expect(high.retry && high.delayMs).toBeLessThanOrEqual(Math.round(delay * 1.1));
      const draws = Array.from({ length: 500 }, () => {
        const next = nextAttempt(i + 1, failed);
        return next.retry ? next.delayMs : NaN;
      });
      for (const d of draws) {
        expect(d).toBeGreaterThanOrEqual(delay * 0.9 - 1);
        expect(d).toBeLessThanOrEqual(delay * 1.1 + 1);
      }
      expect(new Set(draws).size).toBeGreaterThan(1);
    });
  });

  it.each([
    ['a timeout', { ok: false, error: 'timeout' as const }],
    ['a refused connection', { ok: false, error: 'connection_refused' as const }],
    ['a 429', { ok: false, status: 429, error: 'http_error' as const }],
    ['a 404', { ok: false, status: 404, error: 'http_error' as const }],
  ])('retries after %s', (_name, result) => {
    expect(nextAttempt(1, result).retry).toBe(true);
  });

  it.each([
    ['a 2xx', { ok: true, status: 200 }, 'delivered'],
    ['410 Gone', { ok: false, status: 410, error: 'http_error' as const }, 'gone'],
    ['an SSRF refusal', { ok: false, error: 'ssrf_refused' as const }, 'ssrf_refused'],
    ['an invalid URL', { ok: false, error: 'invalid_url' as const }, 'invalid_url'],
    ['a redirect (never followed)', { ok: false, status: 302, error: 'redirect' as const }, 'redirect'],
  ])('stops after %s', (_name, result, reason) => {
    expect(nextAttempt(1, result)).toEqual({ retry: false, reason });
  });

  it('counts attempts from 1', () => {
    expect(() => nextAttempt(0, failed)).toThrow('attempt must be an integer from 1 (got 0)');
  });
});

describe('webhookBackoffStrategy (BullMQ)', () => {
  const strategy = webhookBackoffStrategy();

  it('uses the delay the processor decided and logged', () => {
    expect(strategy(3, 'webhook', new DeliveryRetryError('failed', 1234))).toBe(1234);
  });

  it('follows the schedule for other errors, and -1 (no retry) past the last attempt', () => {
    const delay = strategy(1, 'webhook', new Error('Connection is closed.')) as number;
    expect(delay).toBeGreaterThanOrEqual(4500);
    expect(delay).toBeLessThanOrEqual(5500);
    expect(strategy(7, 'webhook', new Error('x'))).toBe(-1);
    expect(webhookBackoffStrategy([10])(1, 'webhook', new Error('x'))).toBeLessThanOrEqual(11);
  });
});
