/**
 * Where webhooks keep their state in Redis, all under `<prefix>:webhooks:` (prefix = QUEUE_PREFIX, as for
 * the API's own records). The delivery queue is a BullMQ queue named `webhooks.delivery`, so its keys are
 * `<prefix>:webhooks.delivery:*` and obliterating it can never touch the keys below.
 */
export const WEBHOOK_QUEUE = 'webhooks.delivery';

export function webhookKeys(prefix: string) {
  const k = (...parts: string[]) => [prefix, 'webhooks', ...parts].join(':');
  return {
    /** Hash: `secret`, `secret_created_at`, `url`, `url_updated_at`, `url_disabled_at`, `url_disabled_reason`. */
    account: (accountId: string) => k('account', accountId),
    /** Sorted set: replaced secret -> valid until (Unix ms). */
    previousSecrets: (accountId: string) => k('account', accountId, 'previous-secrets'),
    /** Hash: one delivery (see DeliveryRecord). */
    delivery: (deliveryId: string) => k('delivery', deliveryId),
    /** List of JSON attempt records, oldest first. */
    attempts: (deliveryId: string) => k('delivery', deliveryId, 'attempts'),
    /** List of the job's delivery ids, oldest first. */
    jobDeliveries: (jobId: string) => k('job', jobId, 'deliveries'),
    /** Hash: event key (`job.completed`, `job.progress:12`) -> delivery id; makes emitting idempotent. */
    jobEvents: (jobId: string) => k('job', jobId, 'events'),
    /** String with a TTL of one throttle window: a progress event went out in this window. */
    progressThrottle: (jobId: string) => k('job', jobId, 'progress-throttle'),
    /** String: job.completed was emitted; later progress is dropped. */
    completed: (jobId: string) => k('job', jobId, 'completed'),
    /** Sorted set: delivery id (progress in flight, started not yet attempted) -> the completed delivery waits for it until (Unix ms). */
    progressInFlight: (jobId: string) => k('job', jobId, 'progress-in-flight'),
  };
}
export type WebhookKeys = ReturnType<typeof webhookKeys>;
