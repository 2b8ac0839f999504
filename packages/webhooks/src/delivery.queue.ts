/**
 * The delivery queue's BullMQ side: the job data, every job option, and the backoff strategy that turns
 * the retry policy's decision into BullMQ's delay.
 *
 * One BullMQ job per delivery (jobId = delivery id) and one BullMQ attempt per delivery attempt. The
 * processor decides with nextAttempt() and records the decision (next_retry_at) before throwing; the
 * backoff strategy then hands BullMQ that same delay, so what the log says is what happens.
 */
import type { BackoffStrategy, JobsOptions } from 'bullmq';
import { MAX_ATTEMPTS, nextAttempt, RETRY_DELAYS_MS } from './retry-policy';

export { WEBHOOK_QUEUE } from './keys';

/** The custom backoff type of delivery jobs: Worker `settings.backoffStrategy` must be webhookBackoffStrategy. */
export const WEBHOOK_BACKOFF = 'webhook';

export interface DeliveryJobData {
  deliveryId: string;
}

/** Every option of a delivery job. */
export function deliveryJobOptions(deliveryId: string): JobsOptions {
  return {
    // The delivery id, so adding the same delivery twice (an emit repeated after a crash) queues it once.
    jobId: deliveryId,
    attempts: MAX_ATTEMPTS,
    backoff: { type: WEBHOOK_BACKOFF },
    // The delivery log is the history; BullMQ's copies are only kept a while for operators.
    removeOnComplete: { age: 3600, count: 1000 },
    removeOnFail: { age: 24 * 3600, count: 1000 },
  };
}

/** Thrown by the processor after a failed attempt that is to be retried after `delayMs`. */
export class DeliveryRetryError extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
    this.name = 'DeliveryRetryError';
  }
}

/**
 * BullMQ backoff strategy for delivery jobs. A DeliveryRetryError carries the delay the processor already
 * decided and logged; any other error (Redis unavailable mid-attempt) follows the same schedule.
 * Returning -1 tells BullMQ not to retry.
 */
export function webhookBackoffStrategy(delaysMs: readonly number[] = RETRY_DELAYS_MS): BackoffStrategy {
  return (attemptsMade, _type, err) => {
    if (err instanceof DeliveryRetryError) return err.delayMs;
    const next = nextAttempt(Math.max(1, attemptsMade), { ok: false, error: 'network_error' }, { delaysMs });
    return next.retry ? next.delayMs : -1;
  };
}
