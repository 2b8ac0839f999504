/**
 * The delivery process's sweep (JobWebhooks), driven directly with the stub worker: completions nobody
 * heard are queued once, open jobs wait, jobs without a webhook leave the set, and one job it cannot
 * read does not stop the others.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobObject } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { JobWebhooks } from '../src/job-webhooks.service';
import { startStubWorker } from '../../api/test/support/stub-worker';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };
let sweeper: JobWebhooks;

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  const { store, jobs, webhooks, storage } = api.server.deps;
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage });
  sweeper = new JobWebhooks({ store, jobs, webhooks, logger: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

async function submit(key: string, body: Record<string, unknown>, engine = 'gen-a'): Promise<JobObject> {
  const res = await fetch(`${api.url}/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    // gen-a's jobs are waited for; gen-idle's would wait in vain.
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: engine === 'gen-a' ? 'wait=10' : 'respond-async' },
    body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 10, ...body }),
  });
  expect(res.status).toBeLessThan(300);
  return (await res.json()) as JobObject;
}

const pending = () => api.server.deps.store.redis.zrange(`${redis.prefix}:webhooks-pending`, '0', '-1');

describe('the webhook sweep', () => {
  it('queues job.completed once for finished jobs with a webhook, drops those without, keeps open ones', async () => {
    const { api_key: key, id: accountId } = await api.account();
    const withHook = await submit(key, { webhook: 'http://127.0.0.1:9/hook' });
    const withoutHook = await submit(key, {});
    // gen-idle has no worker: queued for good.
    const open = await submit(key, { webhook: 'http://127.0.0.1:9/hook' }, 'gen-idle');
    expect(withHook.status).toBe('succeeded');
    expect(open.status).toBe('queued');
    // A record whose engine no process serves any more: unreadable here.
    const { store } = api.server.deps;
    await store.saveNewJob({ id: 'job-of-a-gone-engine', account_id: accountId, engine: 'gone', kind: 'text-to-image', created_at: 1 }, Date.now() + 60_000);

    expect(await sweeper.sweep()).toBe(2);
    expect((await pending()).sort()).toEqual(['job-of-a-gone-engine', open.id].sort());
    const [delivery] = await api.server.deps.webhooks.deliveries.list(withHook.id);
    expect(delivery).toMatchObject({ event: 'job.completed' });
    expect(JSON.parse((await api.server.deps.webhooks.deliveries.get(delivery.id))!.body).data).toMatchObject({ id: withHook.id, status: 'succeeded', credits_charged: expect.any(Number) });
    expect(await api.server.deps.webhooks.deliveries.list(withoutHook.id)).toEqual([]);

    // Again: nothing new is queued.
    expect(await sweeper.sweep()).toBe(0);
    expect(await api.server.deps.webhooks.deliveries.list(withHook.id)).toHaveLength(1);
  });
});
