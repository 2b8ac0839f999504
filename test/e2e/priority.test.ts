/**
 * Priority tiers: each account's jobs queue at its tier's BullMQ priority, so a higher tier's job is
 * picked before a lower tier's queued earlier, and queue positions count the jobs that will really go
 * first. One stub worker (one job at a time, 100 ms a step) makes the order observable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../apps/api/src/config';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { waitFor } from './support';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, PRIORITY_TIERS: 'priority=1,standard=5,batch=10' });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

const account = async (name: string, tier?: string) => {
  const res = await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name, credits: 100, ...(tier ? { tier } : {}) }) });
  return { res, body: (await res.json()) as { id: string; api_key: string; tier: string } };
};
const submit = async (key: string) => {
  const res = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, {
    method: 'POST',
    body: JSON.stringify({ text_prompts: [{ text: 'slow' }], steps: 10 }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
};
const job = async (key: string, id: string) =>
  (await (await fetch(`${api.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { status: string; started_at: string | null; queue_position: number | null };

describe('priority tiers', () => {
  it("picks a higher tier's job before a lower tier's queued earlier, and says so in queue_position", async () => {
    const batch = (await account('bulk', 'batch')).body;
    const vip = (await account('vip', 'priority')).body;
    expect([batch.tier, vip.tier]).toEqual(['batch', 'priority']);
    const b1 = await submit(batch.api_key);
    await waitFor(async () => (await job(batch.api_key, b1)).status === 'running', 'the first job to start');
    const b2 = await submit(batch.api_key);
    const b3 = await submit(batch.api_key);
    const p = await submit(vip.api_key);
    expect((await job(vip.api_key, p)).queue_position).toBe(0);
    expect((await job(batch.api_key, b2)).queue_position).toBe(1);
    expect((await job(batch.api_key, b3)).queue_position).toBe(2);
    const ids = [[batch.api_key, b1], [batch.api_key, b2], [batch.api_key, b3], [vip.api_key, p]] as const;
    await waitFor(async () => (await Promise.all(ids.map(([k, id]) => job(k, id)))).every((j) => j.status === 'succeeded'), 'every job to finish', 30_000);
    const started = await Promise.all(ids.map(async ([k, id]) => [id, Date.parse((await job(k, id)).started_at!)] as const));
    const order = [...started].sort((a, b) => a[1] - b[1]).map(([id]) => id);
    expect(order).toEqual([b1, p, b2, b3]);
  });

  it('takes tiers at creation and from PUT /v1/admin/accounts/{id}/tier; an unknown tier is a 400', async () => {
    const plain = (await account('plain')).body;
    expect(plain.tier).toBe('');
    expect((await account('gold', 'gold')).res.status).toBe(400);
    const set = await api.admin(`/v1/admin/accounts/${plain.id}/tier`, { method: 'PUT', body: JSON.stringify({ tier: 'priority' }) });
    expect(set.status).toBe(200);
    expect(((await set.json()) as { tier: string }).tier).toBe('priority');
    const bad = await api.admin(`/v1/admin/accounts/${plain.id}/tier`, { method: 'PUT', body: JSON.stringify({ tier: 'gold' }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toContain('priority, standard, batch');
  });

  it('refuses at start-up a DEFAULT_TIER that is not a tier, and PRIORITY_TIERS that do not parse', () => {
    expect(() => parseConfig({ PRIORITY_TIERS: 'gold=1', DEFAULT_TIER: 'standard' })).toThrow(/DEFAULT_TIER standard is not one of PRIORITY_TIERS \(gold\)/);
    expect(() => parseConfig({ PRIORITY_TIERS: 'gold=0' })).toThrow(/PRIORITY_TIERS/);
  });
});
