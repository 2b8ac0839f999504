/**
 * Webhooks end to end: the real API (in-process), real generation workers, the delivery process as a
 * child (`npm run start:webhooks`'s entry), real Redis, the tiny models and HTTP receivers on 127.0.0.1.
 * Signatures are checked with the test's own Standard Webhooks implementation.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookDeliveryObject, WebhookEventBody } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../support/redis';
import { ADMIN_TOKEN, type Service, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';
import {
  call,
  type ChildProcessHandle,
  deliveries,
  eventsFor,
  FAST_WEBHOOKS,
  finished,
  type Receiver,
  spawnWebhooks,
  startReceiver,
  submit,
  verifySignature,
} from './support';

let redis: TestRedis;
let service: Service;
let hooks: ChildProcessHandle;
let receiver: Receiver;
const workers: TestWorker[] = [];
const receivers: Receiver[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, { env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
  hooks = spawnWebhooks(service);
  receiver = await startReceiver();
  receivers.push(receiver);
  // tiny-sd jobs succeed; upscale jobs go to a worker whose storage is missing, so they fail.
  workers.push(await startTestWorker(service, { ENGINES: 'tiny-sd' }));
  workers.push(await startTestWorker(service, { ENGINES: 'tiny-upscaler-x2', ARTIFACTS_DIR: '/dev/null/artifacts' }));
  await hooks.ready;
});

afterAll(async () => {
  await hooks?.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(receivers.map((r) => r.close()));
  await service?.close();
  await redis?.close();
});

async function account(name = 'hooks'): Promise<string> {
  return service.apiKey(name);
}

async function secretOf(key: string): Promise<string> {
  const res = await call(service, key, '/v1/webhooks/secret');
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return ((await res.json()) as { secret: string }).secret;
}

describe('the delivery process', () => {
  it('answers /healthz and /readyz on its own port', async () => {
    const ready = hooks.lines.map((l) => { try { return JSON.parse(l); } catch { return {}; } }).find((l) => l.msg === 'webhook delivery process ready');
    expect(ready.health_port).toEqual(expect.any(Number));
    const base = `http://127.0.0.1:${ready.health_port}`;
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const readyz = await fetch(`${base}/readyz`);
    expect([readyz.status, await readyz.json()]).toEqual([200, { status: 'ready' }]);
  });
});

describe('a delivery', () => {
  it('carries the job object of GET /v1/jobs/{id}, signed (Standard Webhooks), with artifact URLs that download', async () => {
    const key = await account();
    const secret = await secretOf(key);
    const job = await submit(service, key, { webhook: receiver.url('/hook?token=abc') });
    const request = await waitFor(async () => receiver.requests.find((r) => JSON.parse(r.body).data.id === job.id), 'the delivery');
    // Read after the delivery: by then its hold is closed too (credits_charged final).
    const done = await finished(service, key, job.id);

    expect(request.method).toBe('POST');
    expect(request.path).toBe('/hook?token=abc');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['webhook-id']).toMatch(/^msg_/);
    expect(verifySignature(secret, request.body, request.headers)).toBe(true);
    // One byte changed, or another secret: refused.
    expect(verifySignature(secret, request.body.replace('succeeded', 'succeedeD'), request.headers)).toBe(false);
    expect(verifySignature(secret.slice(0, -4) + 'AAA=', request.body, request.headers)).toBe(false);

    // The few lines of Node the README gives receivers work too.
    const readme = readFileSync(new URL('../../docs/webhooks.md', import.meta.url), 'utf8');
    const snippet = /```js\n([\s\S]*?)```/.exec(readme)![1].replace(/^import .*$/m, '');
    const verifyWebhook = new Function('createHmac', 'timingSafeEqual', `${snippet}\nreturn verifyWebhook;`)(createHmac, timingSafeEqual);
    expect(verifyWebhook(secret, request.body, request.headers)).toBe(true);
    expect(verifyWebhook(secret, `${request.body} `, request.headers)).toBe(false);
    expect(verifyWebhook(secret, request.body, { ...request.headers, 'webhook-timestamp': undefined })).toBe(false);

    const event = WebhookEventBody.strict().parse(JSON.parse(request.body));
    expect(event.type).toBe('job.completed');
    // The same object as the API's, but for the artifact URLs' signatures, made a moment apart.
    const strip = (j: any) => ({ ...j, artifacts: j.artifacts.map(({ url: _, ...a }: any) => a) });
    expect(strip(event.data)).toEqual(strip(done));
    expect(event.data.status).toBe('succeeded');
    expect(event.data.artifacts).toHaveLength(1);
    const image = await fetch(event.data.artifacts[0].url);
    // Signed to outlive the whole retry schedule (~18 h), unlike the API's one-hour default.
    const expires = Number(new URL(event.data.artifacts[0].url).searchParams.get('expires'));
    expect(expires - Date.now() / 1000).toBeGreaterThan(18 * 3600);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/png');
    // Small: URLs only, never image bytes.
    expect(request.body.length).toBeLessThan(4096);

    const [delivery] = await deliveries(service, key, job.id);
    WebhookDeliveryObject.strict().parse(delivery);
    expect(delivery).toMatchObject({ event: 'job.completed', state: 'succeeded', attempts: 1, status: 200, webhook_id: request.headers['webhook-id'], final_reason: 'delivered' });
    // The client's token is not shown back.
    expect(delivery.url).toBe(receiver.url('/hook?token=***'));
  });
});

describe('the events filter', () => {
  it('sends start, throttled progress and completed, in order, when all are asked for', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    // Long enough (a few seconds) for the throttle to matter: the job reports 150 steps.
    const job = await submit(service, key, { steps: 150, samples: 3, webhook: hook.url(), webhook_events_filter: ['start', 'progress', 'completed'] });
    const done = await finished(service, key, job.id);
    await waitFor(async () => eventsFor(hook.requests, job.id).some((e) => e.type === 'job.completed'), 'job.completed');

    const events = eventsFor(hook.requests, job.id);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('job.started');
    expect(types.at(-1)).toBe('job.completed');
    expect(types.slice(1, -1).every((t) => t === 'job.progress')).toBe(true);
    expect(events[0].data.status).toBe('running');
    expect(events.at(-1).data.status).toBe('succeeded');
    expect(events.at(-1).data.artifacts).toHaveLength(done.artifacts.length);

    // Throttled: at most one progress event per second, however many steps the job reported.
    const progress = events.filter((e) => e.type === 'job.progress');
    const runMs = Date.parse(done.finished_at) - Date.parse(done.started_at);
    expect(progress.length).toBeGreaterThanOrEqual(Math.min(2, Math.floor(runMs / 1000)));
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(runMs / 1000) + 1);
    for (let i = 1; i < progress.length; i++) {
      // A throttle window (1 s) apart, less the moment between the throttle's answer and the stamp.
      expect(Date.parse(progress[i].created_at) - Date.parse(progress[i - 1].created_at)).toBeGreaterThanOrEqual(950);
      expect(progress[i].data.progress.step).toBeGreaterThan(progress[i - 1].data.progress.step);
    }
    // Every delivery of the job is in its log, in order, all delivered.
    const log = await deliveries(service, key, job.id);
    expect(log.map((d) => d.event)).toEqual(types);
    expect(log.every((d) => d.state === 'succeeded')).toBe(true);
  });

  it('sends only what is asked for: completed by default, start alone when asked', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    const byDefault = await submit(service, key, { webhook: hook.url() });
    const startOnly = await submit(service, key, { webhook: hook.url(), webhook_events_filter: ['start'] });
    await finished(service, key, byDefault.id);
    await finished(service, key, startOnly.id);
    await waitFor(async () => eventsFor(hook.requests, byDefault.id).length && eventsFor(hook.requests, startOnly.id).length, 'both deliveries');
    // Time for anything unwanted to arrive.
    await new Promise((r) => setTimeout(r, 500));
    expect(eventsFor(hook.requests, byDefault.id).map((e) => e.type)).toEqual(['job.completed']);
    expect(eventsFor(hook.requests, startOnly.id).map((e) => e.type)).toEqual(['job.started']);
  });

  it('takes webhook and the filter as multipart fields (repeated, JSON or comma list)', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    const sharp = (await import('sharp')).default;
    const png = await sharp({ create: { width: 128, height: 128, channels: 3, background: { r: 0, g: 0, b: 255 } } }).png().toBuffer();
    const forms: [string, (form: FormData) => void][] = [
      ['repeated', (f) => (f.append('webhook_events_filter', 'start'), f.append('webhook_events_filter', 'completed'))],
      ['JSON', (f) => f.append('webhook_events_filter', '["start","completed"]')],
      ['comma list', (f) => f.append('webhook_events_filter', 'start, completed')],
    ];
    const ids: string[] = [];
    for (const [, addFilter] of forms) {
      const form = new FormData();
      form.append('init_image', new Blob([png], { type: 'image/png' }), 'init.png');
      form.append('text_prompts[0][text]', 'a red square');
      form.append('steps', '10');
      form.append('webhook', hook.url());
      addFilter(form);
      const res = await call(service, key, '/v1/generation/tiny-sd/image-to-image', { method: 'POST', headers: { prefer: 'respond-async' }, body: form });
      expect(res.status).toBeLessThan(300);
      ids.push(((await res.json()) as { id: string }).id);
    }
    for (const id of ids) {
      await waitFor(async () => eventsFor(hook.requests, id).some((e) => e.type === 'job.completed'), `job.completed of ${id}`);
      expect(eventsFor(hook.requests, id).map((e) => e.type)).toEqual(['job.started', 'job.completed']);
    }
  });
});

describe('job.completed', () => {
  it('carries the final status: failed (with the error), canceled while running, canceled while queued', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    const sharp = (await import('sharp')).default;
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 0, g: 128, b: 0 } } }).png().toBuffer();
    const form = new FormData();
    form.append('image', new Blob([png], { type: 'image/png' }), 'small.png');
    form.append('webhook', hook.url());
    const upscale = await call(service, key, '/v1/generation/tiny-upscaler-x2/image-to-image/upscale', { method: 'POST', headers: { prefer: 'respond-async' }, body: form });
    const failedJob = (await upscale.json()) as { id: string };

    // A long job holds the one tiny-sd worker, so the second waits in the queue.
    const running = await submit(service, key, { steps: 150, webhook: hook.url(), webhook_events_filter: ['start', 'completed'] });
    const queued = await submit(service, key, { webhook: hook.url() });
    await waitFor(async () => eventsFor(hook.requests, running.id).some((e) => e.type === 'job.started'), 'the long job to start');
    expect((await call(service, key, `/v1/jobs/${queued.id}/cancel`, { method: 'POST' })).status).toBe(200);
    expect((await call(service, key, `/v1/jobs/${running.id}/cancel`, { method: 'POST' })).status).toBe(202);

    const completed = async (id: string) =>
      waitFor(async () => eventsFor(hook.requests, id).find((e) => e.type === 'job.completed'), `job.completed of ${id}`, 30_000);
    const failed = await completed(failedJob.id);
    expect(failed.data.status).toBe('failed');
    // Its storage is missing: retried, then failed for good; failed attempts before that sent nothing.
    expect(failed.data.error).toMatchObject({ name: 'internal_error' });
    expect(failed.data.credits_charged).toBe(0);
    expect((await completed(running.id)).data).toMatchObject({ status: 'canceled', error: { name: 'canceled' }, artifacts: [] });
    expect((await completed(queued.id)).data).toMatchObject({ status: 'canceled', started_at: null });
    // Once each.
    for (const id of [failedJob.id, running.id, queued.id]) expect(eventsFor(hook.requests, id).filter((e) => e.type === 'job.completed')).toHaveLength(1);
  });
});

describe('retries, timeouts, 410 and redelivery', () => {
  it('retries a receiver that answers 500 twice: three attempts, one webhook-id, every attempt logged', async () => {
    const key = await account();
    const hook = await startReceiver((_req, res, i) => {
      res.statusCode = i < 2 ? 500 : 200;
      res.end(i < 2 ? 'down for a moment' : 'ok');
    });
    receivers.push(hook);
    const job = await submit(service, key, { webhook: hook.url() });
    const log = await waitFor(async () => {
      const [d] = await deliveries(service, key, job.id);
      return d?.state === 'succeeded' && d;
    }, 'the third attempt');

    expect(hook.requests).toHaveLength(3);
    expect(new Set(hook.requests.map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(new Set(hook.requests.map((r) => r.body)).size).toBe(1);
    expect(log).toMatchObject({ attempts: 3, status: 200, error: null, next_retry_at: null, final_reason: 'delivered' });
    expect(log.history.map((a: any) => [a.attempt, a.status, a.error])).toEqual([
      [1, 500, 'http_error'],
      [2, 500, 'http_error'],
      [3, 200, null],
    ]);
    expect(log.history[0].response).toBe('down for a moment');
    // Each failed attempt said when the next would be: 200 ms (+-10%) later here.
    for (const a of log.history.slice(0, 2)) {
      const wait = Date.parse(a.next_retry_at) - Date.parse(a.at);
      expect(wait).toBeGreaterThanOrEqual(180);
      expect(wait).toBeLessThanOrEqual(220);
    }
    expect(log.history.every((a: any) => typeof a.duration_ms === 'number')).toBe(true);
  });

  it('gives up on an attempt that hangs past the timeout (WEBHOOK_TIMEOUT_MS) and tries again', async () => {
    const key = await account();
    // The first request is never answered; the second is.
    const hook = await startReceiver((_req, res, i) => {
      if (i > 0) res.end('ok');
    });
    receivers.push(hook);
    const job = await submit(service, key, { webhook: hook.url() });
    const log = await waitFor(async () => {
      const [d] = await deliveries(service, key, job.id);
      return d?.state === 'succeeded' && d;
    }, 'the second attempt');
    expect(log.history[0]).toMatchObject({ attempt: 1, status: null, error: 'timeout' });
    expect(log.history[0].duration_ms).toBeGreaterThanOrEqual(1950);
    expect(log.history[0].duration_ms).toBeLessThan(5000);
    expect(log.history[1]).toMatchObject({ attempt: 2, status: 200 });
  });

  it("stops at 410 Gone and disables the account's default webhook", async () => {
    const key = await account();
    const hook = await startReceiver((_req, res) => {
      res.statusCode = 410;
      res.end('gone');
    });
    receivers.push(hook);
    const set = await call(service, key, '/v1/user/webhook', { method: 'PUT', body: JSON.stringify({ url: hook.url('/default') }) });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ url: hook.url('/default'), enabled: true, disabled_at: null });

    // No webhook of its own: the account's default is used.
    const job = await submit(service, key, {});
    const log = await waitFor(async () => {
      const [d] = await deliveries(service, key, job.id);
      return d?.state === 'failed' && d;
    }, 'the delivery to fail');
    expect(log).toMatchObject({ attempts: 1, status: 410, final_reason: 'gone', next_retry_at: null });
    const hookNow = await (await call(service, key, '/v1/user/webhook')).json();
    expect(hookNow).toMatchObject({ url: hook.url('/default'), enabled: false, disabled_reason: 'gone' });

    // Disabled: the next job sends nothing.
    const next = await submit(service, key, {});
    await finished(service, key, next.id);
    await new Promise((r) => setTimeout(r, 500));
    expect(await deliveries(service, key, next.id)).toEqual([]);
    expect(hook.requests).toHaveLength(1);

    // Setting it again enables it; DELETE removes it.
    expect(await (await call(service, key, '/v1/user/webhook', { method: 'PUT', body: JSON.stringify({ url: hook.url('/default') }) })).json()).toMatchObject({ enabled: true });
    expect(await (await call(service, key, '/v1/user/webhook', { method: 'DELETE' })).json()).toMatchObject({ url: null, enabled: false });
    expect(await (await call(service, key, '/v1/user/webhook')).json()).toMatchObject({ url: null });
  });

  it('redelivers an event: a new delivery with the same webhook-id and body', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    const job = await submit(service, key, { webhook: hook.url() });
    const [first] = await waitFor(async () => {
      const log = await deliveries(service, key, job.id);
      return log[0]?.state === 'succeeded' && log;
    }, 'the delivery');

    const res = await call(service, key, `/v1/jobs/${job.id}/webhooks/${first.id}/redeliver`, { method: 'POST' });
    expect(res.status).toBe(202);
    const again = await res.json();
    expect(again).toMatchObject({ event: 'job.completed', webhook_id: first.webhook_id, redelivery_of: first.id });
    expect(again.id).not.toBe(first.id);
    await waitFor(async () => hook.requests.length === 2, 'the redelivery');
    expect(hook.requests[1].headers['webhook-id']).toBe(hook.requests[0].headers['webhook-id']);
    expect(hook.requests[1].body).toBe(hook.requests[0].body);
    const log = await waitFor(async () => {
      const l = await deliveries(service, key, job.id);
      return l[1]?.state === 'succeeded' && l;
    }, 'the redelivery to be logged');
    expect(log.map((d: any) => d.redelivery_of)).toEqual([null, first.id]);

    expect((await call(service, key, `/v1/jobs/${job.id}/webhooks/dlv_nope/redeliver`, { method: 'POST' })).status).toBe(404);
  });
});

describe('signing secrets', () => {
  it('rotates: the old and the new secret both verify during the grace period (two signatures)', async () => {
    const key = await account();
    const hook = await startReceiver();
    receivers.push(hook);
    const old = await secretOf(key);
    expect(old).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(await secretOf(key)).toBe(old);

    const rotate = await call(service, key, '/v1/webhooks/secret/rotate', { method: 'POST' });
    expect(rotate.status).toBe(200);
    const rotated = (await rotate.json()) as { secret: string; previous_valid_until: string };
    expect(rotated.secret).not.toBe(old);
    expect(await secretOf(key)).toBe(rotated.secret);
    // The default grace period: 24 h.
    expect(Math.abs(Date.parse(rotated.previous_valid_until) - Date.now() - 86_400_000)).toBeLessThan(60_000);

    const job = await submit(service, key, { webhook: hook.url() });
    const request = await waitFor(async () => hook.requests.find((r) => JSON.parse(r.body).data.id === job.id), 'the delivery');
    expect(String(request.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verifySignature(rotated.secret, request.body, request.headers)).toBe(true);
    expect(verifySignature(old, request.body, request.headers)).toBe(true);
    expect(verifySignature(rotated.secret, `${request.body} `, request.headers)).toBe(false);
    expect(verifySignature(old, request.body.replace('"job.completed"', '"job.started"'), request.headers)).toBe(false);
  });

  it('stops signing with the replaced secret once the grace period (WEBHOOK_SECRET_GRACE) is over', async () => {
    // A second API process of the deployment, with a one-second grace period.
    const quick = await startService(redis, { env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_SECRET_GRACE: '1' } });
    try {
      const key = await account();
      const hook = await startReceiver();
      receivers.push(hook);
      const old = await secretOf(key);
      const rotated = (await (await call(quick, key, '/v1/webhooks/secret/rotate', { method: 'POST' })).json()) as { secret: string; previous_valid_until: string };
      expect(Date.parse(rotated.previous_valid_until) - Date.now()).toBeLessThanOrEqual(1000);
      await new Promise((r) => setTimeout(r, 1100));
      const job = await submit(service, key, { webhook: hook.url() });
      const request = await waitFor(async () => hook.requests.find((r) => JSON.parse(r.body).data.id === job.id), 'the delivery');
      expect(String(request.headers['webhook-signature']).split(' ')).toHaveLength(1);
      expect(verifySignature(rotated.secret, request.body, request.headers)).toBe(true);
      expect(verifySignature(old, request.body, request.headers)).toBe(false);
    } finally {
      await quick.close();
    }
  });
});

describe('submission', () => {
  it('refuses a bad webhook or filter with 400 invalid_webhook: nothing queued, nothing charged', async () => {
    const key = await account();
    const before = await (await call(service, key, '/v1/user/balance')).json();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ webhook: 'not a url' }, /absolute http or https URL/],
      [{ webhook: 'ftp://127.0.0.1/hook' }, /must use http or https \(got ftp\)/],
      [{ webhook: 'http://user:pw@127.0.0.1/hook' }, /user name or password/],
      [{ webhook: 'http://10.0.0.1/hook' }, /webhook host 10\.0\.0\.1 is a private address/],
      [{ webhook: 'http://169.254.169.254/latest/meta-data' }, /link-local/],
      [{ webhook: `http://127.0.0.1/${'a'.repeat(2100)}` }, /at most 2048 characters/],
      [{ webhook: 42 }, /webhook/],
      [{ webhook: receiver.url(), webhook_events_filter: ['finished'] }, /unknown event; valid events: start, progress, completed/],
      [{ webhook: receiver.url(), webhook_events_filter: [] }, /at least one event/],
      [{ webhook: receiver.url(), webhook_events_filter: 'completed' }, /webhook_events_filter/],
    ];
    for (const [fields, message] of cases) {
      const res = await call(service, key, '/v1/generation/tiny-sd/text-to-image', {
        method: 'POST',
        headers: { prefer: 'respond-async' },
        body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 10, ...fields }),
      });
      expect(res.status, JSON.stringify(fields)).toBe(400);
      const body = (await res.json()) as { id: string; name: string; message: string; field: string };
      expect(body.name).toBe('invalid_webhook');
      expect(body.message).toMatch(message);
      // the field it is about, which the message starts with
      expect(Object.keys(body).sort()).toEqual(['field', 'id', 'message', 'name']);
      expect(body.message.startsWith(`${body.field}: `), body.message).toBe(true);
      expect(body.field).toMatch(/^webhook(_events_filter(\[\d+\])?)?$/);
    }
    // A multipart filter that is neither a list nor JSON.
    const form = new FormData();
    form.append('image', new Blob([Buffer.from('x')]), 'x.png');
    form.append('webhook_events_filter', '["start"');
    const multipart = await call(service, key, '/v1/generation/tiny-upscaler-x2/image-to-image/upscale', { method: 'POST', body: form });
    expect(multipart.status).toBe(400);
    // A dry run checks the webhook too.
    const dry = await call(service, key, '/v1/generation/tiny-sd/text-to-image?dry_run=true', { method: 'POST', body: JSON.stringify({ text_prompts: [{ text: 'x' }], webhook: 'http://192.168.1.1/' }) });
    expect(dry.status).toBe(400);
    expect(await (await call(service, key, '/v1/user/balance')).json()).toEqual(before);
    expect(((await (await call(service, key, '/v1/jobs')).json()) as { data: unknown[] }).data).toEqual([]);
  });

  it("hides another account's deliveries (404) and lets a read key see deliveries but not the secret or settings", async () => {
    const owner = await account('owner');
    const job = await submit(service, owner, { webhook: receiver.url() });
    const [delivery] = await waitFor(async () => {
      const log = await deliveries(service, owner, job.id);
      return log.length > 0 && log;
    }, 'the delivery');
    const other = await account('other');
    expect((await call(service, other, `/v1/jobs/${job.id}/webhooks`)).status).toBe(404);
    const redeliver = await call(service, other, `/v1/jobs/${job.id}/webhooks/${delivery.id}/redeliver`, { method: 'POST' });
    expect(redeliver.status).toBe(404);
    expect(((await redeliver.json()) as { name: string }).name).toBe('not_found');

    const accountId = ((await (await call(service, owner, '/v1/user/account')).json()) as { id: string }).id;
    const created = await fetch(`${service.url}/v1/admin/accounts/${accountId}/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'read' }),
    });
    const readKey = ((await created.json()) as { api_key: string }).api_key;
    expect((await call(service, readKey, `/v1/jobs/${job.id}/webhooks`)).status).toBe(200);
    for (const [method, path] of [
      ['GET', '/v1/webhooks/secret'],
      ['POST', '/v1/webhooks/secret/rotate'],
      ['GET', '/v1/user/webhook'],
      ['PUT', '/v1/user/webhook'],
      ['POST', `/v1/jobs/${job.id}/webhooks/${delivery.id}/redeliver`],
    ]) {
      const res = await call(service, readKey, path, { method, body: method === 'PUT' ? JSON.stringify({ url: receiver.url() }) : undefined });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
  });

  it('checks the default webhook as a job webhook is checked', async () => {
    const key = await account();
    for (const url of ['http://10.1.2.3/hook', 'gopher://127.0.0.1/', 'nope']) {
      const res = await call(service, key, '/v1/user/webhook', { method: 'PUT', body: JSON.stringify({ url }) });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { name: string }).name).toBe('invalid_webhook');
    }
    const missing = await call(service, key, '/v1/user/webhook', { method: 'PUT', body: JSON.stringify({}) });
    expect(missing.status).toBe(400);
    expect(await (await call(service, key, '/v1/user/webhook')).json()).toMatchObject({ url: null });
  });
});

describe('documentation', () => {
  it('lists the webhook endpoints, fields and invalid_webhook in /openapi.json', async () => {
    const doc = (await (await fetch(`${service.url}/openapi.json`)).json()) as any;
    for (const path of ['/v1/jobs/{id}/webhooks', '/v1/jobs/{id}/webhooks/{delivery}/redeliver', '/v1/user/webhook', '/v1/webhooks/secret', '/v1/webhooks/secret/rotate']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    expect(doc.components.schemas.TextToImageRequest.properties).toHaveProperty('webhook');
    expect(doc.components.schemas.UpscaleRequest.properties).toHaveProperty('webhook_events_filter');
    expect(doc.paths['/v1/generation/{engine_id}/text-to-image'].post.responses['400'].description).toContain('invalid_webhook');
    expect(doc.components.schemas).toHaveProperty('WebhookEvent');
  });
});

describe('retention and logs', () => {
  it("removes a job's delivery records with the job", async () => {
    const key = await account();
    const job = await submit(service, key, { webhook: receiver.url() });
    await waitFor(async () => (await deliveries(service, key, job.id)).some((d) => d.state === 'succeeded'), 'the delivery');
    const redisKeys = async () => (await service.server.deps.store.redis.keys(`${redis.prefix}:webhooks:*`)).filter((k) => k.includes(job.id)).length;
    expect(await redisKeys()).toBeGreaterThan(0);
    // The job sweep, as if the retention period had passed.
    await service.server.deps.jobs.sweep(Date.now() + 2 * 86_400_000);
    expect((await call(service, key, `/v1/jobs/${job.id}/webhooks`)).status).toBe(404);
    expect(await redisKeys()).toBe(0);
  });

  it('keeps secrets and webhook URLs out of the delivery process log', async () => {
    const key = await account();
    const secret = await secretOf(key);
    const job = await submit(service, key, { webhook: receiver.url('/private/path?token=s3cr3t-token') });
    await waitFor(async () => (await deliveries(service, key, job.id)).some((d) => d.state === 'succeeded'), 'the delivery');
    const log = hooks.lines.join('\n');
    expect(log).toContain('webhook delivered');
    expect(log).not.toContain(secret);
    expect(log).not.toContain(secret.slice('whsec_'.length));
    expect(log).not.toContain('s3cr3t-token');
    expect(log).not.toContain('/private/path');
  });
});
