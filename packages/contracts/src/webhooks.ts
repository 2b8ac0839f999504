/**
 * The webhook endpoints' request and response shapes, for validation and /openapi.json. The records
 * behind them (secrets, default URL, delivery log) are @sdq/webhooks'.
 */
import { z } from 'zod';
import { JobObject } from './jobs';

export const WEBHOOK_EVENT_TYPE_NAMES = ['job.started', 'job.progress', 'job.completed'] as const;

/** PUT /v1/user/webhook. */
export const SetWebhookRequest = z
  .object({
    url: z
      .string()
      .max(2048, 'must be at most 2048 characters')
      .nullable()
      .describe('An http or https URL for the jobs that name no `webhook` of their own; null removes it.'),
  })
  .meta({ id: 'SetWebhookRequest' });

/** GET/PUT /v1/user/webhook. */
export const DefaultWebhookResponse = z
  .object({
    url: z.string().nullable().describe('null when none is set.'),
    enabled: z.boolean().describe('False once a receiver answered 410 Gone; setting a URL again enables it.'),
    updated_at: z.string().nullable(),
    disabled_at: z.string().nullable(),
    disabled_reason: z.string().nullable().describe('`gone` after a 410.'),
  })
  .meta({ id: 'DefaultWebhook' });

/** GET /v1/webhooks/secret and POST /v1/webhooks/secret/rotate. */
export const WebhookSecretResponse = z
  .object({
    secret: z.string().describe('whsec_ and the base64 of the HMAC key.'),
    previous_valid_until: z
      .string()
      .nullable()
      .optional()
      .describe('After a rotation: until when the replaced secret still signs (each delivery then carries both signatures).'),
  })
  .meta({ id: 'WebhookSecret' });

const DELIVERY_ERRORS = [
  'timeout',
  'connection_refused',
  'connection_reset',
  'dns_failed',
  'unreachable',
  'tls_error',
  'ssrf_refused',
  'invalid_url',
  'redirect',
  'http_error',
  'network_error',
] as const;

const WebhookAttempt = z.object({
  attempt: z.number().int().describe('1 = the first.'),
  at: z.string(),
  status: z.number().int().nullable().describe("The receiver's HTTP status; null when there was no answer."),
  error: z.enum(DELIVERY_ERRORS).nullable(),
  duration_ms: z.number(),
  next_retry_at: z.string().nullable(),
  response: z.string().describe("The start of the receiver's answer (at most 4096 bytes)."),
});

/** One delivery of GET /v1/jobs/{id}/webhooks. */
export const WebhookDeliveryObject = z
  .object({
    id: z.string(),
    event: z.enum(WEBHOOK_EVENT_TYPE_NAMES),
    webhook_id: z.string().describe('The `webhook-id` header: the same over every attempt and redelivery of one event.'),
    url: z.string().describe('Query values masked.'),
    state: z.enum(['pending', 'retrying', 'succeeded', 'failed', 'skipped']),
    attempts: z.number().int(),
    status: z.number().int().nullable(),
    error: z.enum(DELIVERY_ERRORS).nullable(),
    duration_ms: z.number().nullable(),
    last_attempt_at: z.string().nullable(),
    next_retry_at: z.string().nullable(),
    final_reason: z.string().nullable().describe('delivered, gone, ssrf_refused, invalid_url, redirect, attempts_exhausted or superseded; null while going on.'),
    created_at: z.string(),
    redelivery_of: z.string().nullable(),
    history: z.array(WebhookAttempt),
  })
  .meta({ id: 'WebhookDelivery' });

export const WebhookDeliveryList = z.object({ data: z.array(WebhookDeliveryObject) }).meta({ id: 'WebhookDeliveryList' });

/** The body of every delivery. */
export const WebhookEventBody = z
  .object({
    type: z.enum(WEBHOOK_EVENT_TYPE_NAMES),
    created_at: z.string(),
    data: JobObject,
  })
  .meta({ id: 'WebhookEvent' });
