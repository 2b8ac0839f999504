/**
 * A v2beta call is a job like any other: a failed one is refunded, an Idempotency-Key gives the same
 * job charged once, its webhook fields are taken, the job API and its events know it, and the rate limit
 * answers in Stability's error shape. The stub worker stands in for the GPU (prompts steer it:
 * "fail:<name>" fails with that catalogue name).
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, V2BETA_ENGINES: 'core=gen-a,upscale-creative=gen-a', RATE_LIMIT: '40', MAX_ACTIVE_JOBS: '0', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

const core = (key: string, fields: Record<string, string>, headers: Record<string, string> = {}) => {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return fetch(`${api.url}/v2beta/stable-image/generate/core`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}`, ...headers } });
};
const balance = async (key: string) => ((await (await fetch(`${api.url}/v1/user/balance`, { headers: { authorization: `Bearer ${key}` } })).json()) as { credits: number }).credits;

describe('v2beta calls are jobs', () => {
  it('a failed generation is refunded, and answered with its catalogue error in Stability\'s shape', async () => {
    const { api_key } = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'refund', credits: 20 }) })).json();
    const res = await core(api_key, { prompt: 'fail:invalid_prompts' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { id: string; name: string; errors: string[] };
    expect(body.name).toBe('invalid_prompts');
    expect(body.errors[0]).toContain('the stub worker was told to fail');
    expect(await balance(api_key)).toBe(20);
    const ok = await core(api_key, { prompt: 'a red circle' });
    expect(ok.status).toBe(200);
    expect(await balance(api_key)).toBe(17);
  });

  it('the same Idempotency-Key and form answer the same job, charged once; another form under it is 422', async () => {
    const { api_key } = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'idem', credits: 20 }) })).json();
    const headers = { 'idempotency-key': 'v2-once', prefer: 'respond-async' };
    const first = await core(api_key, { prompt: 'a red circle', seed: '3' }, headers);
    const again = await core(api_key, { prompt: 'a red circle', seed: '3' }, headers);
    expect(first.status).toBe(202);
    const [a, b] = [(await first.json()) as { id: string }, (await again.json()) as { id: string }];
    expect(b.id).toBe(a.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const other = await core(api_key, { prompt: 'a blue square', seed: '3' }, headers);
    expect(other.status).toBe(422);
    expect(((await other.json()) as { name: string }).name).toBe('idempotency_key_mismatch');
    // the job API knows it, as any job
    const job = (await (await fetch(`${api.url}/v1/jobs/${a.id}`, { headers: { authorization: `Bearer ${api_key}` } })).json()) as { id: string; kind: string; engine: string };
    expect(job).toMatchObject({ id: a.id, kind: 'text-to-image', engine: 'gen-a' });
    for (let i = 0; i < 100 && (await balance(api_key)) !== 17; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await balance(api_key)).toBe(17);
  });

  it('takes webhook fields, refusing an address webhooks may not call before anything is held', async () => {
    const { api_key } = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'hook', credits: 20 }) })).json();
    const refused = await core(api_key, { prompt: 'a red circle', webhook: 'http://10.0.0.1/hook' });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { name: string }).name).toBe('invalid_webhook');
    expect(await balance(api_key)).toBe(20);
    const res = await core(api_key, { prompt: 'a red circle', webhook: 'http://127.0.0.1:9/hook', webhook_events_filter: 'start,completed' }, { prefer: 'respond-async' });
    expect(res.status, await res.clone().text()).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const job = (await (await fetch(`${api.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${api_key}` } })).json()) as { id: string };
    expect(job.id).toBe(id);
  });

  it('creative upscale answers {id}; the result is the job\'s image once done', async () => {
    const { api_key } = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'creative', credits: 30 }) })).json();
    const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#0000ff' } }).png().toBuffer();
    const form = new FormData();
    form.append('image', new Blob([image], { type: 'image/png' }), 'in.png');
    form.append('prompt', 'a blue background');
    const res = await fetch(`${api.url}/v2beta/stable-image/upscale/creative`, { method: 'POST', body: form, headers: { authorization: `Bearer ${api_key}` } });
    expect(res.status, await res.clone().text()).toBe(200);
    const { id } = (await res.json()) as { id: string };
    let result: Response | undefined;
    for (let i = 0; i < 100; i++) {
      result = await fetch(`${api.url}/v2beta/results/${id}`, { headers: { authorization: `Bearer ${api_key}` } });
      if (result.status !== 202) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(result!.status).toBe(200);
    expect(result!.headers.get('content-type')).toBe('image/png');
    expect((await sharp(Buffer.from(await result!.arrayBuffer())).metadata()).width).toBe(128);
    expect(await balance(api_key)).toBe(5);
  });

  it('the rate limit answers 429 in Stability\'s shape, with Retry-After', async () => {
    const { api_key } = await (await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'limited', credits: 1000 }) })).json();
    let limited: Response | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const res = await core(api_key, { prompt: 'a red circle' }, { prefer: 'respond-async' }).then((r) => (r.status === 429 ? r : (void r.body?.cancel(), undefined)));
      limited = res;
    }
    expect(limited, 'a 429 within 60 calls at RATE_LIMIT 40').toBeDefined();
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await limited!.json()) as { id: string; name: string; errors: string[] };
    expect(body.name).toBe('rate_limited');
    expect(body.errors).toHaveLength(1);
  });
});
