/**
 * SSRF through the service, with loopback targets only: a test must never send a packet outside
 * 127.0.0.0/8 and ::1. (The address table itself, private ranges and all, is packages/webhooks' unit test.)
 *
 * - An API without WEBHOOK_ALLOWED_HOSTS refuses every loopback form at submission (400 invalid_webhook).
 * - An API and a delivery process that list them deliver to each.
 * - A redirect is never followed, whatever it points to, and not retried.
 * - An address the API let through but the delivery process does not list is refused where the
 *   connection is made, logged as such and not retried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { type Service, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';
import { call, type ChildProcessHandle, deliveries, eventsFor, FAST_WEBHOOKS, type Receiver, spawnWebhooks, startReceiver, submit } from './support';

const LISTED = '127.0.0.1,127.0.0.2,::1,::ffff:127.0.0.1,localhost';

let redis: TestRedis;
/** WEBHOOK_ALLOWED_HOSTS unset. */
let strict: Service;
/** Lists every loopback form used here, and 127.0.0.3, which the delivery process does not list. */
let open: Service;
let hooks: ChildProcessHandle;
let worker: TestWorker;
let v4: Receiver;
let v4b: Receiver;
let v4c: Receiver;
let v6: Receiver;

beforeAll(async () => {
  redis = await startTestRedis();
  // Two API processes of one deployment (same Redis and prefix), configured differently.
  strict = await startService(redis, { env: FAST_WEBHOOKS });
  open = await startService(redis, { env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: `${LISTED},127.0.0.3` } });
  hooks = spawnWebhooks(open, { WEBHOOK_ALLOWED_HOSTS: LISTED });
  [v4, v4b, v4c, v6] = await Promise.all([startReceiver(undefined, '127.0.0.1'), startReceiver(undefined, '127.0.0.2'), startReceiver(undefined, '127.0.0.3'), startReceiver(undefined, '::1')]);
  worker = await startTestWorker(open, { ENGINES: 'tiny-sd' });
  await hooks.ready;
});

afterAll(async () => {
  await hooks?.kill('SIGTERM');
  await worker?.close();
  await Promise.all([v4, v4b, v4c, v6].map((r) => r?.close()));
  await strict?.close();
  await open?.close();
  await redis?.close();
});

/** The loopback forms and the receiver each reaches. */
const targets = (): [string, string, Receiver][] => [
  ['127.0.0.2', v4b.url('/a'), v4b],
  ['[::1]', v6.url('/b'), v6],
  ['[::ffff:127.0.0.1]', v4.url('/c', '[::ffff:127.0.0.1]'), v4],
  ['localhost', v4.url('/d', 'localhost'), v4],
];

describe('webhook URLs towards loopback', () => {
  it('are refused at submission (400 invalid_webhook, nothing charged) when not in WEBHOOK_ALLOWED_HOSTS', async () => {
    const key = await strict.apiKey('strict');
    const before = await (await call(strict, key, '/v1/user/balance')).json();
    for (const [name, url] of [...targets(), ['127.0.0.1', v4.url('/e')] as const]) {
      const res = await call(strict, key, '/v1/generation/tiny-sd/text-to-image', {
        method: 'POST',
        headers: { prefer: 'respond-async' },
        body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 10, webhook: url }),
      });
      expect(res.status, name).toBe(400);
      const body = (await res.json()) as { name: string; message: string };
      expect(body.name).toBe('invalid_webhook');
      expect(body.message).toMatch(/loopback address, which webhooks may not call \(an operator allows it with WEBHOOK_ALLOWED_HOSTS=/);
      // The message names the host, never the whole URL (its path or query may hold a token).
      expect(body.message).not.toMatch(/\/[a-e]\b/);
      // As the account's default webhook too.
      const put = await call(strict, key, '/v1/user/webhook', { method: 'PUT', body: JSON.stringify({ url }) });
      expect(put.status, name).toBe(400);
    }
    expect(await (await call(strict, key, '/v1/user/balance')).json()).toEqual(before);
    expect([v4, v4b, v6].every((r) => r.requests.length === 0)).toBe(true);
  });

  it('are delivered when listed in WEBHOOK_ALLOWED_HOSTS', async () => {
    const key = await open.apiKey('open');
    for (const [name, url, receiver] of targets()) {
      const job = await submit(open, key, { webhook: url });
      const event = await waitFor(async () => eventsFor(receiver.requests, job.id)[0], `the delivery to ${name}`, 30_000);
      expect(event.type, name).toBe('job.completed');
      const [delivery] = await deliveries(open, key, job.id);
      expect(delivery, name).toMatchObject({ state: 'succeeded', status: 200 });
    }
  });

  it('never follow a redirect (listed target or not) and do not retry it', async () => {
    const key = await open.apiKey('redirects');
    const redirector = await startReceiver((req, res) => {
      res.writeHead(req.path === '/to-listed' ? 302 : 307, { location: req.path === '/to-listed' ? v4b.url('/redirected') : v4c.url('/redirected') });
      res.end();
    });
    try {
      for (const path of ['/to-listed', '/to-unlisted']) {
        const job = await submit(open, key, { webhook: redirector.url(path) });
        const delivery = await waitFor(async () => {
          const [d] = await deliveries(open, key, job.id);
          return d?.state === 'failed' && d;
        }, `the redirected delivery (${path}) to end`);
        expect(delivery).toMatchObject({ attempts: 1, error: 'redirect', final_reason: 'redirect', next_retry_at: null });
        expect([302, 307]).toContain(delivery.status);
      }
      // Time for a retry, had there been one.
      await new Promise((r) => setTimeout(r, 600));
      expect(redirector.requests).toHaveLength(2);
      expect(v4b.requests.some((r) => r.path === '/redirected')).toBe(false);
      expect(v4c.requests).toHaveLength(0);
    } finally {
      await redirector.close();
    }
  });

  it('are refused where the connection is made when the delivery process does not list them: logged, not retried', async () => {
    const key = await open.apiKey('connect-time');
    // The API lists 127.0.0.3; the delivery process does not.
    const job = await submit(open, key, { webhook: v4c.url('/unlisted') });
    const delivery = await waitFor(async () => {
      const [d] = await deliveries(open, key, job.id);
      return d?.state === 'failed' && d;
    }, 'the refused delivery');
    expect(delivery).toMatchObject({ attempts: 1, status: null, error: 'ssrf_refused', final_reason: 'ssrf_refused', next_retry_at: null });
    await new Promise((r) => setTimeout(r, 600));
    expect((await deliveries(open, key, job.id))[0].attempts).toBe(1);
    expect(v4c.requests).toHaveLength(0);
    expect(hooks.lines.some((l) => l.includes('"ssrf_refused"') && l.includes(job.id))).toBe(true);
  });
});
