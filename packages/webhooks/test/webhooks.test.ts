/**
 * The whole path as the apps will use it: emit -> delivery log -> BullMQ delivery queue -> worker ->
 * signed POST to a real receiver on loopback -> attempt logged -> retry or stop. Real Redis, real BullMQ,
 * retry waits shortened to milliseconds.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { JobObject } from '@sdq/contracts';
import { WEBHOOK_QUEUE } from '../src/keys';
import { verify } from '../src/signing';
import { Webhooks, type WebhooksOptions } from '../src/webhooks';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startReceiver, type Receiver } from './support/receiver';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

async function waitFor<T>(probe: () => Promise<T> | T, what: string, timeoutMs = 10_000): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as Truthy<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let n = 0;
function jobObject(status: JobObject['status'], progress: JobObject['progress'] = null, id = `job_${++n}`): JobObject {
  const finished = status === 'succeeded' || status === 'failed' || status === 'canceled';
  return {
    id,
    status,
    engine: 'tiny-sd',
    kind: 'text-to-image',
    created_at: '2024-01-01T00:00:00.000Z',
    started_at: status === 'queued' ? null : '2024-01-01T00:00:01.000Z',
    finished_at: finished ? '2024-01-01T00:00:02.000Z' : null,
    queue_position: status === 'queued' ? 0 : null,
    progress,
    credits_charged: status === 'succeeded' ? 0.2 : finished ? 0 : null,
    params: { text_prompts: [{ text: 'a red circle', weight: 1 }], steps: 10 },
    artifacts:
      status === 'succeeded'
        ? [{ url: `http://127.0.0.1:3000/v1/artifacts/generations/${id}/0.png?sig=x`, seed: 42, finish_reason: 'SUCCESS', content_type: 'image/png', width: 64, height: 64, content_filtered: false }]
        : [],
    error: null,
    urls: { self: `/v1/jobs/${id}`, cancel: `/v1/jobs/${id}/cancel`, events: `/v1/jobs/${id}/events` },
  };
}

let testRedis: TestRedis;
let redis: Redis;
let connection: { host: string; port: number; maxRetriesPerRequest: null };
beforeAll(async () => {
  testRedis = await startTestRedis();
  redis = new Redis(testRedis.url);
  const url = new URL(testRedis.url);
  connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
});
afterAll(async () => {
  redis.disconnect();
  await testRedis.close();
});

describe('Webhooks through the BullMQ delivery queue', () => {
  let queue: Queue;
  let webhooks: Webhooks;
  let worker: ReturnType<Webhooks['startWorker']>;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    queue = new Queue(WEBHOOK_QUEUE, { prefix: testRedis.prefix, connection });
    webhooks = new Webhooks({ redis, prefix: testRedis.prefix, queue, allowedHosts: '127.0.0.1', retryDelaysMs: [50, 50, 50, 50, 50, 50], timeoutMs: 300 });
    worker = webhooks.startWorker({ connection, concurrency: 4 });
    await worker.waitUntilReady();
  });
  beforeEach(() => {
    receiver.requests.length = 0;
    receiver.handler = (_req, res) => res.end('ok');
  });
  afterAll(async () => {
    await worker.close();
    await queue.close();
    await receiver.close();
  });

  const settled = (jobId: string) =>
    waitFor(async () => {
      const views = await webhooks.deliveries.list(jobId);
      return views.length > 0 && views.every((v) => ['succeeded', 'failed', 'skipped'].includes(v.state)) && views;
    }, `deliveries of ${jobId} to settle`);

  it('delivers job.completed, signed with the account secret, and only the events asked for', async () => {
    const accountId = 'acct_signed';
    const running = jobObject('running', { step: 1, steps: 10 });
    const done = { ...jobObject('succeeded', { step: 10, steps: 10 }), id: running.id };
    // The default filter is ['completed'].
    expect(await webhooks.emit({ type: 'job.started', job: running, accountId, webhook: receiver.url() })).toBeUndefined();
    expect(await webhooks.emit({ type: 'job.progress', job: running, accountId, webhook: receiver.url() })).toBeUndefined();
    const at = new Date('2024-01-01T00:00:02.500Z');
    const delivery = await webhooks.emit({ type: 'job.completed', job: done, accountId, webhook: receiver.url(), at });
    expect(delivery).toMatchObject({ event: 'job.completed', state: 'pending', source: 'job' });

    const [view] = await settled(done.id);
    expect(view).toMatchObject({ state: 'succeeded', attempts: 1, status: 200, webhook_id: delivery!.webhookId });
    expect(receiver.requests).toHaveLength(1);
    const [request] = receiver.requests;
    expect(JSON.parse(request.body)).toEqual({ type: 'job.completed', created_at: at.toISOString(), data: done });
    expect(request.headers['webhook-id']).toBe(delivery!.webhookId);
    expect(verify(await webhooks.accounts.secret(accountId), request.body, request.headers)).toBe(true);
  });

  it('retries a receiver that answers 500 twice: three attempts, one webhook-id, each logged', async () => {
    receiver.handler = (_req, res, i) => {
      res.statusCode = i < 2 ? 500 : 200;
      res.end(i < 2 ? 'not yet' : 'ok');
    };
    const done = jobObject('failed');
    const delivery = await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_retry', webhook: receiver.url() });
    const [view] = await settled(done.id);
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual(Array(3).fill(delivery!.webhookId));
    expect(view).toMatchObject({ state: 'succeeded', attempts: 3, final_reason: 'delivered' });
    expect(view.history.map((h) => [h.attempt, h.status, h.error, h.response])).toEqual([
      [1, 500, 'http_error', 'not yet'],
      [2, 500, 'http_error', 'not yet'],
      [3, 200, null, 'ok'],
    ]);
    expect(view.history[0].next_retry_at).not.toBeNull();
    expect(view.history[2].next_retry_at).toBeNull();
    // Each attempt is signed afresh: the timestamp is the attempt's, the signature valid for it.
    const secret = await webhooks.accounts.secret('acct_retry');
    for (const r of receiver.requests) expect(verify(secret, r.body, r.headers)).toBe(true);
  });

  it('retries after a receiver hangs past the timeout', async () => {
    receiver.handler = (_req, res, i) => {
      if (i > 0) res.end('ok');
    };
    const done = jobObject('succeeded');
    await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_hang', webhook: receiver.url() });
    const [view] = await settled(done.id);
    expect(view.history.map((h) => [h.status, h.error])).toEqual([
      [null, 'timeout'],
      [200, null],
    ]);
    expect(view.history[0].duration_ms).toBeGreaterThanOrEqual(290);
  });

  it('gives up after the last attempt', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    const done = jobObject('succeeded');
    await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_down', webhook: receiver.url() });
    const [view] = await settled(done.id);
    expect(view).toMatchObject({ state: 'failed', attempts: 7, final_reason: 'attempts_exhausted', status: 503, next_retry_at: null });
    expect(receiver.requests).toHaveLength(7);
  });

  it('stops at 410 Gone and disables the account default webhook it came from', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 410;
      res.end();
    };
    const accountId = 'acct_gone';
    await webhooks.accounts.setDefaultWebhook(accountId, receiver.url('/default'));
    const done = jobObject('succeeded');
    // No job webhook: the account's default is used.
    expect(await webhooks.emit({ type: 'job.completed', job: done, accountId })).toMatchObject({ source: 'account' });
    const [view] = await settled(done.id);
    expect(view).toMatchObject({ state: 'failed', attempts: 1, status: 410, final_reason: 'gone' });
    expect(receiver.requests).toHaveLength(1);
    expect(await webhooks.accounts.getDefaultWebhook(accountId)).toMatchObject({ enabled: false, disabled_reason: 'gone' });
    expect(await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded'), accountId })).toBeUndefined();
  });

  it('a 410 from a job webhook stops retries but leaves the account default alone', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 410;
      res.end();
    };
    const accountId = 'acct_job_gone';
    await webhooks.accounts.setDefaultWebhook(accountId, receiver.url('/default'));
    const done = jobObject('succeeded');
    await webhooks.emit({ type: 'job.completed', job: done, accountId, webhook: receiver.url('/job') });
    const [view] = await settled(done.id);
    expect(view).toMatchObject({ final_reason: 'gone', attempts: 1 });
    expect(await webhooks.accounts.getDefaultWebhook(accountId)).toMatchObject({ enabled: true });
  });

  it('logs an SSRF refusal at delivery and does not retry it', async () => {
    const internal = await startReceiver(undefined, '127.0.0.2');
    try {
      const done = jobObject('succeeded');
      await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_ssrf', webhook: internal.url() });
      const [view] = await settled(done.id);
      expect(view).toMatchObject({ state: 'failed', attempts: 1, error: 'ssrf_refused', final_reason: 'ssrf_refused', status: null });
      expect(internal.requests).toHaveLength(0);
    } finally {
      await internal.close();
    }
  });

  it('queues started and completed once however often they are emitted', async () => {
    const done = jobObject('succeeded');
    const emits = await Promise.all(
      Array.from({ length: 4 }, () => webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_dup', webhook: receiver.url() })),
    );
    expect(new Set(emits.map((d) => d!.id)).size).toBe(1);
    await settled(done.id);
    await sleep(200);
    expect(receiver.requests).toHaveLength(1);
  });

  it('redelivers with the same webhook-id and body as a new logged delivery', async () => {
    const done = jobObject('succeeded');
    const original = await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_re', webhook: receiver.url() });
    await settled(done.id);
    expect(await webhooks.redeliver('job_other', original!.id)).toBeUndefined();
    expect(await webhooks.redeliver(done.id, 'dlv_missing')).toBeUndefined();
    const again = await webhooks.redeliver(done.id, original!.id);
    expect(again).toMatchObject({ webhookId: original!.webhookId, redeliveryOf: original!.id });
    expect(again!.id).not.toBe(original!.id);
    const views = await waitFor(async () => {
      const all = await webhooks.deliveries.list(done.id);
      return all.length === 2 && all[1].state === 'succeeded' && all;
    }, 'the redelivery');
    expect(views.map((v) => [v.id, v.webhook_id, v.redelivery_of])).toEqual([
      [original!.id, original!.webhookId, null],
      [again!.id, original!.webhookId, original!.id],
    ]);
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([original!.webhookId, original!.webhookId]);
    expect(receiver.requests[1].body).toBe(receiver.requests[0].body);
  });

  it('sends started, throttled progress and completed in order, completed last', async () => {
    const events = ['start', 'progress', 'completed'] as const;
    const accountId = 'acct_order';
    const id = `job_order_${++n}`;
    await webhooks.emit({ type: 'job.started', job: jobObject('running', { step: 0, steps: 20 }, id), accountId, webhook: receiver.url(), events });
    // Twenty steps in a burst: the throttle lets the first through and none of the others within the second.
    for (let step = 1; step <= 20; step++) {
      await webhooks.emit({ type: 'job.progress', job: jobObject('running', { step, steps: 20 }, id), accountId, webhook: receiver.url(), events });
    }
    await waitFor(() => receiver.requests.length >= 2, 'started and progress');
    await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded', { step: 20, steps: 20 }, id), accountId, webhook: receiver.url(), events });
    expect(await webhooks.emit({ type: 'job.progress', job: jobObject('succeeded', { step: 20, steps: 20 }, id), accountId, webhook: receiver.url(), events })).toBeUndefined();
    await settled(id);
    expect(receiver.requests.map((r) => JSON.parse(r.body).type)).toEqual(['job.started', 'job.progress', 'job.completed']);
    expect(JSON.parse(receiver.requests[1].body).data.progress).toEqual({ step: 1, steps: 20 });
  });
});

describe('Webhooks.process ordering (processor called directly)', () => {
  let receiver: Receiver;
  let added: { name: string; data: { deliveryId: string }; opts: unknown }[];
  let webhooks: Webhooks;
  const options = (extra: Partial<WebhooksOptions> = {}): WebhooksOptions => ({
    redis,
    prefix: testRedis.prefix,
    allowedHosts: ['127.0.0.1'],
    queue: {
      add: (async (name: string, data: { deliveryId: string }, opts: unknown) => {
        added.push({ name, data, opts });
        return {};
      }) as never,
    },
    ...extra,
  });

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  beforeEach(() => {
    added = [];
    receiver.requests.length = 0;
    receiver.handler = (_req, res) => res.end('ok');
    webhooks = new Webhooks(options());
  });
  afterAll(async () => {
    await receiver.close();
  });

  const events = ['progress', 'completed'] as const;

  it('queues each delivery with its options under the delivery id', async () => {
    const done = jobObject('succeeded');
    const delivery = await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_opts', webhook: receiver.url() });
    expect(added).toEqual([
      {
        name: 'deliver',
        data: { deliveryId: delivery!.id },
        opts: expect.objectContaining({ jobId: delivery!.id, attempts: 7, backoff: { type: 'webhook' } }),
      },
    ]);
  });

  it('drops a progress delivery that the completed one overtook', async () => {
    const id = `job_sup_${++n}`;
    const progress = await webhooks.emit({ type: 'job.progress', job: jobObject('running', { step: 3, steps: 10 }, id), accountId: 'acct_sup', webhook: receiver.url(), events });
    const completed = await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded', null, id), accountId: 'acct_sup', webhook: receiver.url(), events });
    expect(await webhooks.process({ data: { deliveryId: completed!.id } })).toMatchObject({ state: 'succeeded' });
    expect(await webhooks.process({ data: { deliveryId: progress!.id } })).toEqual({ state: 'skipped' });
    expect(receiver.requests.map((r) => JSON.parse(r.body).type)).toEqual(['job.completed']);
    expect((await webhooks.deliveries.list(id)).map((v) => [v.event, v.state, v.final_reason])).toEqual([
      ['job.progress', 'skipped', 'superseded'],
      ['job.completed', 'succeeded', 'delivered'],
    ]);
  });

  it('holds the completed delivery until a progress delivery in flight has its answer', async () => {
    let progressAnsweredAt = 0;
    receiver.handler = (req, res) => {
      if (JSON.parse(req.body).type !== 'job.progress') return void res.end('ok');
      setTimeout(() => {
        progressAnsweredAt = performance.now();
        res.end('ok');
      }, 300);
    };
    const id = `job_hold_${++n}`;
    const progress = await webhooks.emit({ type: 'job.progress', job: jobObject('running', { step: 1, steps: 2 }, id), accountId: 'acct_hold', webhook: receiver.url(), events });
    const sending = webhooks.process({ data: { deliveryId: progress!.id } });
    await waitFor(() => receiver.requests.length === 1, 'the progress request');
    const completed = await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded', null, id), accountId: 'acct_hold', webhook: receiver.url(), events });
    await webhooks.process({ data: { deliveryId: completed!.id } });
    await sending;
    expect(receiver.requests.map((r) => JSON.parse(r.body).type)).toEqual(['job.progress', 'job.completed']);
    expect(receiver.requests[1].at).toBeGreaterThanOrEqual(progressAnsweredAt);
  });

  it('holds the completed delivery until the started one has been attempted, even if picked up first', async () => {
    const id = `job_start_${++n}`;
    const all = ['start', 'completed'] as const;
    const started = await webhooks.emit({ type: 'job.started', job: jobObject('running', null, id), accountId: 'acct_st', webhook: receiver.url(), events: all });
    const completed = await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded', null, id), accountId: 'acct_st', webhook: receiver.url(), events: all });
    const sendingCompleted = webhooks.process({ data: { deliveryId: completed!.id } });
    await sleep(150);
    expect(receiver.requests).toHaveLength(0);
    await webhooks.process({ data: { deliveryId: started!.id } });
    await sendingCompleted;
    expect(receiver.requests.map((r) => JSON.parse(r.body).type)).toEqual(['job.started', 'job.completed']);
  });

  it('a redelivered progress event is sent even after completion', async () => {
    const id = `job_reprog_${++n}`;
    const progress = await webhooks.emit({ type: 'job.progress', job: jobObject('running', { step: 1, steps: 2 }, id), accountId: 'acct_rp', webhook: receiver.url(), events });
    await webhooks.process({ data: { deliveryId: progress!.id } });
    await webhooks.emit({ type: 'job.completed', job: jobObject('succeeded', null, id), accountId: 'acct_rp', webhook: receiver.url(), events });
    const again = await webhooks.redeliver(id, progress!.id);
    expect(await webhooks.process({ data: { deliveryId: again!.id } })).toMatchObject({ state: 'succeeded' });
  });

  it('queues again a delivery recorded by a process that died before queueing it', async () => {
    let fail = true;
    const flaky = new Webhooks(
      options({
        queue: {
          add: (async (name: string, data: { deliveryId: string }, opts: unknown) => {
            if (fail) throw new Error('Connection is closed.');
            added.push({ name, data, opts });
            return {};
          }) as never,
        },
      }),
    );
    const done = jobObject('succeeded');
    const input = { type: 'job.completed' as const, job: done, accountId: 'acct_crash', webhook: receiver.url() };
    await expect(flaky.emit(input)).rejects.toThrow('Connection is closed.');
    fail = false;
    const delivery = await flaky.emit(input);
    expect(added.map((a) => a.data.deliveryId)).toEqual([delivery!.id]);
    expect(await flaky.deliveries.list(done.id)).toHaveLength(1);
    // Once attempted, emitting again neither queues nor duplicates.
    await flaky.process({ data: { deliveryId: delivery!.id } });
    await flaky.emit(input);
    expect(added).toHaveLength(1);
    expect(await flaky.process({ data: { deliveryId: delivery!.id } })).toEqual({ state: 'done' });
    expect(receiver.requests).toHaveLength(1);
  });

  it('refuses a job.completed for an unfinished job, and emitting without a queue', async () => {
    await expect(webhooks.emit({ type: 'job.completed', job: jobObject('running'), accountId: 'a', webhook: receiver.url() })).rejects.toThrow(
      /job.completed needs a finished job \(job job_\d+ is running\)/,
    );
    const noQueue = new Webhooks({ redis, prefix: testRedis.prefix });
    await expect(noQueue.emit({ type: 'job.completed', job: jobObject('canceled'), accountId: 'a', webhook: receiver.url() })).rejects.toThrow(
      'Webhooks needs the delivery queue',
    );
  });

  it('returns missing for a delivery removed with its job, and cleans up after the job', async () => {
    const done = jobObject('succeeded');
    const delivery = await webhooks.emit({ type: 'job.completed', job: done, accountId: 'acct_rm', webhook: receiver.url() });
    await webhooks.removeJob(done.id);
    expect(await webhooks.process({ data: { deliveryId: delivery!.id } })).toEqual({ state: 'missing' });
    expect(await redis.keys(`${testRedis.prefix}:webhooks:job:${done.id}:*`)).toEqual([]);
  });

  it('logs ids, host and outcome, never the path, query, body or secret', async () => {
    const lines: [object, string][] = [];
    const logger = { info: (o: object, m: string) => lines.push([o, m]), warn: (o: object, m: string) => lines.push([o, m]) };
    const logged = new Webhooks(options({ logger }));
    const done = jobObject('succeeded');
    const delivery = await logged.emit({ type: 'job.completed', job: done, accountId: 'acct_log', webhook: receiver.url('/secret-path?token=t0ps3cret') });
    await logged.process({ data: { deliveryId: delivery!.id } });
    expect(lines).toHaveLength(1);
    const [[line, message]] = lines;
    expect(message).toBe('webhook delivered');
    expect(line).toMatchObject({ deliveryId: delivery!.id, jobId: done.id, host: `127.0.0.1:${receiver.port}`, status: 200, attempt: 1 });
    const text = JSON.stringify(line);
    const secret = await logged.accounts.secret('acct_log');
    for (const hidden of ['secret-path', 't0ps3cret', secret, 'artifacts']) expect(text).not.toContain(hidden);
  });
});
