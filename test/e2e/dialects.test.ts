/**
 * What every dialect shares, checked through OpenAI's and AUTOMATIC1111's routes: a call is an sdq job
 * with Idempotency-Key (replayed, charged once; a reused key for another body refused), the rate and
 * active-job limits (429 with Retry-After, in the dialect's error shape, nothing charged), webhooks (the
 * X-Webhook-URL header and the account's default, signed deliveries through the real delivery process),
 * the job API and SSE of a dialect's job, and cancellation (the waiting call answers canceled, refunded).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildProcessHandle, eventsFor, FAST_WEBHOOKS, type Receiver, spawnWebhooks, startReceiver, verifySignature } from '../webhooks/support';
import { accountWith, authed, balanceOf, readEvents, type Service, type Stack, startStack, textToImageBody, waitFor } from './support';

let stack: Stack;
let service: Service;
let hooks: ChildProcessHandle;
let receiver: Receiver;

const RATE_LIMIT = 6;
beforeAll(async () => {
  stack = await startStack({ env: { ...FAST_WEBHOOKS, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', RATE_LIMIT: String(RATE_LIMIT), RATE_LIMIT_WINDOW_MS: '60000', MAX_ACTIVE_JOBS: '2' }, workerEnv: { ENGINES: 'tiny-sd' } });
  service = stack.service;
  hooks = spawnWebhooks(service);
  receiver = await startReceiver();
  await hooks.ready;
});
afterAll(async () => {
  await hooks?.kill('SIGTERM');
  await receiver?.close();
  await stack?.close();
});

const post = (path: string, key: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${service.url}${path}`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', ...headers }), body: JSON.stringify(body) });
const balance = (key: string) => balanceOf(service, key);
const jobOf = async (key: string, id: string) => (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as { id: string; status: string; credits_charged: number };
const newestJob = async (key: string) => ((await (await fetch(`${service.url}/v1/jobs?limit=1`, { headers: authed(key) })).json()) as { data: { id: string; status: string }[] }).data[0];

/** One call per dialect, each with a body valid for it. */
const DIALECTS = {
  openai: { path: '/v1/images/generations', body: { prompt: 'a red circle on a blue background', quality: 'low', seed: 42, response_format: 'b64_json' }, other: { prompt: 'a blue square', quality: 'low' }, long: { prompt: 'a red circle', quality: 'hd' } },
  a1111: { path: '/sdapi/v1/txt2img', body: { prompt: 'a red circle on a blue background', steps: 12, seed: 42 }, other: { prompt: 'a blue square', steps: 12 }, long: { prompt: 'a red circle', steps: 150 } },
} as const;
/** The catalogue name in each dialect's error body. */
const codeOf = (dialect: keyof typeof DIALECTS, body: any): string => (dialect === 'openai' ? body.error.code : body.error);
const imagesOf = (dialect: keyof typeof DIALECTS, body: any): string[] => (dialect === 'openai' ? body.data.map((d: { b64_json: string }) => d.b64_json) : body.images);

describe.each(Object.keys(DIALECTS) as (keyof typeof DIALECTS)[])('the %s dialect as an sdq job', (dialect) => {
  const { path, body, other, long } = DIALECTS[dialect];

  it('Idempotency-Key: a retry replays the first job (same id, same images, charged once); another body under it is refused', async () => {
    const key = await accountWith(service, `${dialect}-idem`, 50);
    const before = await balance(key);
    const first = await post(path, key, body, { 'idempotency-key': 'retry-me' });
    expect(first.status, await first.clone().text()).toBe(200);
    const again = await post(path, key, body, { 'idempotency-key': 'retry-me' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('x-job-id')).toBe(first.headers.get('x-job-id'));
    expect(imagesOf(dialect, await again.json())).toEqual(imagesOf(dialect, await first.json()));
    const job = await jobOf(key, first.headers.get('x-job-id')!);
    expect(job.credits_charged).toBeGreaterThan(0);
    expect(before - (await balance(key))).toBeCloseTo(job.credits_charged, 6);

    const reused = await post(path, key, other, { 'idempotency-key': 'retry-me' });
    expect(reused.status).toBe(422);
    expect(codeOf(dialect, await reused.json())).toBe('idempotency_key_mismatch');
    expect(before - (await balance(key))).toBeCloseTo(job.credits_charged, 6);
  });

  it('rate limit per key: over it, 429 rate_limited with Retry-After in the dialect shape; another key goes on', async () => {
    const key = await accountWith(service, `${dialect}-rate`, 5);
    const before = await balance(key);
    // refused requests count too (the limit runs before validation), and are never charged
    const answers = await Promise.all(Array.from({ length: RATE_LIMIT + 1 }, () => post(path, key, { ...body, steps: 'many', size: 'huge' })));
    const limited = answers.filter((r) => r.status === 429);
    expect(limited).toHaveLength(1);
    expect(answers.filter((r) => r.status === 400)).toHaveLength(RATE_LIMIT);
    expect(Number(limited[0].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const refused = await limited[0].json();
    expect(codeOf(dialect, refused)).toBe('rate_limited');
    if (dialect === 'openai') expect(refused.error.type).toBe('rate_limit_error');
    else expect(refused.detail).toMatch(/requests in 60 s with this API key/);
    expect(await balance(key)).toBe(before);
    const fresh = await accountWith(service, `${dialect}-rate-2`, 5);
    expect((await post(path, fresh, body)).status).toBe(200);
  });

  it('the active-job limit counts jobs of every dialect: a third is 429 too_many_active_jobs, nothing held', async () => {
    const key = await accountWith(service, `${dialect}-active`, 50);
    const stability: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await post('/v1/generation/tiny-sd/text-to-image', key, JSON.parse(textToImageBody({ steps: 150 })), { prefer: 'respond-async' });
      expect(res.status).toBe(202);
      stability.push(((await res.json()) as { id: string }).id);
    }
    const held = await balance(key);
    const refused = await post(path, key, body);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(codeOf(dialect, await refused.json())).toBe('too_many_active_jobs');
    expect(await balance(key)).toBe(held);
    for (const id of stability) await fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers: authed(key) });
    await waitFor(async () => (await Promise.all(stability.map((id) => jobOf(key, id)))).every((j) => j.status === 'canceled'), 'the cancels');
  });

  it('X-Webhook-URL gets the job events, signed; the account default webhook serves a call without the header', async () => {
    const key = await accountWith(service, `${dialect}-hooks`, 50);
    const secret = ((await (await fetch(`${service.url}/v1/webhooks/secret`, { headers: authed(key) })).json()) as { secret: string }).secret;
    const byHeader = await post(path, key, body, { 'x-webhook-url': receiver.url() });
    expect(byHeader.status).toBe(200);
    const id = byHeader.headers.get('x-job-id')!;
    const events = await waitFor(async () => {
      const got = eventsFor(receiver.requests, id);
      return got.some((e) => e.type === 'job.completed') && got;
    }, 'the job.completed delivery');
    const completed = receiver.requests.find((r) => JSON.parse(r.body).data?.id === id && JSON.parse(r.body).type === 'job.completed')!;
    expect(verifySignature(secret, completed.body, completed.headers)).toBe(true);
    expect(events.find((e) => e.type === 'job.completed').data).toMatchObject({ id, status: 'succeeded' });

    const set = await fetch(`${service.url}/v1/user/webhook`, { method: 'PUT', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ url: receiver.url() }) });
    expect(set.status).toBe(200);
    const byDefault = await post(path, key, body);
    const defaultId = byDefault.headers.get('x-job-id')!;
    await waitFor(async () => eventsFor(receiver.requests, defaultId).some((e) => e.type === 'job.completed'), 'the default webhook delivery');

    // a webhook address the SSRF rules refuse is a 400 in the dialect shape, before any charge
    const before = await balance(key);
    const bad = await post(path, key, body, { 'x-webhook-url': 'http://169.254.169.254/latest' });
    expect(bad.status).toBe(400);
    expect(codeOf(dialect, await bad.json())).toBe('invalid_webhook');
    expect(await balance(key)).toBe(before);
  });

  it('the job API and SSE follow a dialect call while it waits; canceling it answers the call canceled, refunded', async () => {
    const key = await accountWith(service, `${dialect}-cancel`, 50);
    const before = await balance(key);
    const waiting = post(path, key, long);
    const job = await waitFor(async () => {
      const j = await newestJob(key);
      return j?.status === 'running' && j;
    }, 'the job to start');
    const events = await readEvents(`${service.url}/v1/jobs/${job.id}/events`, key, (e, all) => all.filter((x) => x.event === 'progress').length >= 3);
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(events.find((e) => e.event === 'progress')!.data.steps).toBe(dialect === 'openai' ? 50 : 150);

    expect((await fetch(`${service.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: authed(key) })).status).toBeLessThan(300);
    const answer = await waiting;
    expect(answer.status).toBe(409);
    expect(answer.headers.get('x-job-id')).toBe(job.id);
    expect(codeOf(dialect, await answer.json())).toBe('canceled');
    await waitFor(async () => (await jobOf(key, job.id)).status === 'canceled', 'the canceled status');
    expect(await balance(key)).toBeCloseTo(before - (await jobOf(key, job.id)).credits_charged, 6);
    expect((await jobOf(key, job.id)).credits_charged).toBe(0);
  });

  it('Prefer: respond-async answers 202 with the job at once (as a sync wait that runs out does); the job then ends with its images', async () => {
    const key = await accountWith(service, `${dialect}-async`, 50);
    const res = await post(path, key, body, { prefer: 'respond-async' });
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    const job = (await res.json()) as { id: string; status: string };
    expect(res.headers.get('location')).toMatch(new RegExp(`/v1/jobs/${job.id}$`));
    expect(job.id).toBe(res.headers.get('x-job-id'));
    expect(['queued', 'running']).toContain(job.status);
    await waitFor(async () => (await jobOf(key, job.id)).status === 'succeeded', 'the job to succeed');
  });
});

describe('the openai SDK and the limits', () => {
  it('turns a 429 into its RateLimitError with Retry-After readable', async () => {
    const key = await accountWith(service, 'sdk-rate', 5);
    const client = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: key, maxRetries: 0 });
    const errors = await Promise.all(Array.from({ length: RATE_LIMIT + 1 }, () => client.images.generate({ prompt: 'x', size: '3x3' as '256x256' }).catch((e: unknown) => e)));
    const limited = errors.filter((e) => e instanceof OpenAI.RateLimitError) as InstanceType<typeof OpenAI.RateLimitError>[];
    expect(limited).toHaveLength(1);
    expect(limited[0].code).toBe('rate_limited');
    expect(Number(limited[0].headers?.['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});
