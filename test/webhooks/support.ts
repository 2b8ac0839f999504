/**
 * Helpers for the webhook suites: the delivery process as a child process (`npm run start:webhooks`'s
 * entry, so it can be SIGKILLed), loopback receivers, an independent Standard Webhooks verifier, and
 * calls with a key. Built on the e2e support (in-process API, real workers, real Redis and models).
 *
 * Receivers listen on loopback only (127.0.0.0/8, ::1): no test sends a packet anywhere else.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { ARTIFACT_URL_SECRET, type ChildProcessHandle, ROOT, type Service, spawnEntry, waitFor } from '../e2e/support';

export { type ChildProcessHandle, spawnEntry };

export { type ReceivedRequest, type Receiver, startReceiver } from '../../packages/webhooks/test/support/receiver';

/**
 * Quick enough for tests: retries 200 ms apart, attempts time out after 2 s (short, yet long enough for a
 * receiver in a busy test process to answer), a sweep every second.
 */
export const FAST_WEBHOOKS: Record<string, string> = {
  WEBHOOK_RETRY_DELAYS_MS: '200,200,200,200,200,200',
  WEBHOOK_TIMEOUT_MS: '2000',
  WEBHOOK_SWEEP_INTERVAL: '1',
};

/**
 * A killed delivery process's attempts are made again within ~4 s. Only where a test kills one: on a
 * loaded machine a short lock can also expire under a live process, which then sends a delivery twice
 * (allowed, at least once, but not what exact-count tests expect). Every delivery process of a deployment
 * needs the same values: the first stalled check blocks the others' for its interval.
 */
export const QUICK_STALL_RECOVERY: Record<string, string> = {
  WEBHOOK_LOCK_DURATION_MS: '3000',
  WEBHOOK_STALLED_INTERVAL_MS: '1000',
};

/** The webhook delivery process for a service: same Redis, prefix, storage, public URL and artifact key as its API. */
export function spawnWebhooks(service: Service, env: Record<string, string> = {}): ChildProcessHandle {
  return spawnEntry(
    'apps/webhooks/src/main.ts',
    { ...service.env, PUBLIC_URL: service.server.deps.config.publicUrl, ARTIFACT_URL_SECRET, WEBHOOK_HEALTH_PORT: '0', WEBHOOK_HEALTH_HOST: '127.0.0.1', ...FAST_WEBHOOKS, ...env },
    'webhook delivery process ready',
  );
}

/**
 * Standard Webhooks verification written from the specification, independent of @sdq/webhooks: the HMAC
 * key is the base64 after `whsec_`, the signed content `<webhook-id>.<webhook-timestamp>.<raw body>`, and
 * the header a space-separated list of `v1,<base64>`. True when any signature matches.
 */
export function verifySignature(secret: string, rawBody: string, headers: IncomingHttpHeaders, toleranceSeconds = 300): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${rawBody}`).digest();
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',');
    const given = Buffer.from(value ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

/** fetch with the key; a string body is sent as JSON. */
export function call(service: Pick<Service, 'url'>, key: string, path: string, init: RequestInit = {}): Promise<Response> {
  const json: Record<string, string> = typeof init.body === 'string' ? { 'content-type': 'application/json' } : {};
  return fetch(service.url + path, { ...init, headers: { authorization: `Bearer ${key}`, ...json, ...(init.headers as Record<string, string>) } });
}

/** Submits a text-to-image job asynchronously (202 or, if already done, 200); returns the job object. */
export async function submit(service: Pick<Service, 'url'>, key: string, body: Record<string, unknown>, engine = 'tiny-sd'): Promise<any> {
  const res = await call(service, key, `/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    headers: { prefer: 'respond-async' },
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 42, ...body }),
  });
  if (res.status !== 202 && res.status !== 200) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return res.json();
}

/** The job once finished. */
export function finished(service: Pick<Service, 'url'>, key: string, id: string, timeoutMs = 30_000): Promise<any> {
  return waitFor(
    async () => {
      const job = await (await call(service, key, `/v1/jobs/${id}`)).json();
      return ['succeeded', 'failed', 'canceled'].includes(job.status) && job;
    },
    `job ${id} to finish`,
    timeoutMs,
  );
}

/** GET /v1/jobs/{id}/webhooks. */
export async function deliveries(service: Pick<Service, 'url'>, key: string, id: string): Promise<any[]> {
  const res = await call(service, key, `/v1/jobs/${id}/webhooks`);
  if (res.status !== 200) throw new Error(`deliveries: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { data: any[] }).data;
}

/** The parsed bodies of a receiver's requests for one job. */
export function eventsFor(requests: { body: string }[], jobId: string): any[] {
  return requests.map((r) => JSON.parse(r.body)).filter((e) => e.data?.id === jobId);
}
