/**
 * What a delivery carries: `{"type", "created_at", "data"}`, data being the job object exactly as
 * GET /v1/jobs/{id} returns it at the time of the event (URLs only, never image bytes).
 */
import { type JobObject, TERMINAL_STATUSES, WEBHOOK_EVENT_TYPE_NAMES, WEBHOOK_EVENTS_FILTER_NAMES } from '@sdq/contracts';

export const WEBHOOK_EVENT_TYPES = WEBHOOK_EVENT_TYPE_NAMES;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The names a client uses in `webhook_events_filter` (declared with the request schemas), and the event type each selects. */
export const WEBHOOK_EVENT_FILTERS = WEBHOOK_EVENTS_FILTER_NAMES;
export type WebhookEventFilter = (typeof WEBHOOK_EVENT_FILTERS)[number];
export const DEFAULT_EVENTS_FILTER: readonly WebhookEventFilter[] = ['completed'];
const TYPE_OF_FILTER: Record<WebhookEventFilter, WebhookEventType> = {
  start: 'job.started',
  progress: 'job.progress',
  completed: 'job.completed',
};

/** True when a job's filter (default ['completed']) asks for events of this type. */
export function wantsEvent(filter: readonly WebhookEventFilter[] | undefined, type: WebhookEventType): boolean {
  return (filter ?? DEFAULT_EVENTS_FILTER).some((f) => TYPE_OF_FILTER[f] === type);
}

export interface WebhookEvent {
  type: WebhookEventType;
  /** ISO 8601, when the event happened. */
  created_at: string;
  data: JobObject;
}

/** The event for a job; a `job.completed` must carry a finished job (succeeded, failed or canceled). */
export function webhookEvent(type: WebhookEventType, job: JobObject, at: Date = new Date()): WebhookEvent {
  if (type === 'job.completed' && !TERMINAL_STATUSES.has(job.status)) {
    throw new Error(`job.completed needs a finished job (job ${job.id} is ${job.status})`);
  }
  return { type, created_at: at.toISOString(), data: job };
}
