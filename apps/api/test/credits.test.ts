/**
 * The API's side of credits with the stub worker (which closes no hold itself): admin grants and
 * adjustments, starting balances, the caller's account and ledger, a hold released when the job cannot
 * be queued, and the sweeper's reconciler closing holds that every live process missed (the API that
 * heard the job end was gone; the job never existed), and legacy starting credits moved to the ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { Redis } from 'ioredis';
import { CreditsService } from '@sdq/credits';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { startStubWorker } from './support/stub-worker';

let redis: TestRedis;
let api: TestApi | undefined;
let raw: Redis;
let credits: CreditsService;

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  raw = new Redis(redis.url);
  credits = new CreditsService(raw, { prefix: redis.prefix });
});
afterAll(async () => {
  raw?.disconnect();
  await api?.close();
  await redis?.close();
});

const get = (key: string, path: string) => fetch(api!.url + path, { headers: { authorization: `Bearer ${key}` } });
const create = async (body: Record<string, unknown>) => api!.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'acct', ...body }) });
const grant = (id: string, body: unknown, headers: Record<string, string> = {}) => api!.admin(`/v1/admin/accounts/${id}/credits`, { method: 'POST', body: JSON.stringify(body), headers });

describe('accounts and credits', () => {
  it('a new account starts with 25 credits unless its creator names the balance (0 included)', async () => {
    const res = await create({});
    expect(res.status).toBe(201);
    const a = await res.json();
    expect(a.credits).toBe(25);
    expect(await (await get(a.api_key, '/v1/user/balance')).json()).toEqual({ credits: 25 });
    const zero = await (await create({ credits: 0 })).json();
    expect(await (await get(zero.api_key, '/v1/user/balance')).json()).toEqual({ credits: 0 });
    expect((await (await get(zero.api_key, '/v1/user/ledger')).json()).data).toEqual([]);
    const exact = await (await create({ credits: 0.000001 })).json();
    expect(await (await get(exact.api_key, '/v1/user/balance')).json()).toEqual({ credits: 0.000001 });
    for (const credits of [-1, 1.0000001, 'ten']) expect((await create({ credits })).status).toBe(400);
  });

  it('grants, adjusts (never below zero), refuses bad amounts, and grants once per Idempotency-Key', async () => {
    const a = await (await create({ credits: 1 })).json();
    const granted = await grant(a.id, { amount: 100, reason: 'invoice 7' });
    expect(granted.status).toBe(201);
    expect(await granted.json()).toMatchObject({ account_id: a.id, type: 'grant', amount: 100, reason: 'invoice 7', credits: 101, duplicate: false });
    expect(await (await grant(a.id, { amount: -0.5 })).json()).toMatchObject({ type: 'adjust', amount: -0.5, credits: 100.5, reason: 'operator adjustment' });
    const below = await grant(a.id, { amount: -101 });
    expect(below.status).toBe(409);
    expect((await below.json()).message).toContain('below zero');
    for (const amount of [0, 0.0000001, 'x', null]) expect((await grant(a.id, { amount })).status, String(amount)).toBe(400);
    expect((await grant('acct_nope', { amount: 1 })).status).toBe(404);
    const once = { 'idempotency-key': 'grant-2024-06' };
    expect((await grant(a.id, { amount: 5 }, once)).status).toBe(201);
    const repeat = await grant(a.id, { amount: 5 }, once);
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toMatchObject({ duplicate: true, credits: 105.5 });
    expect(await (await get(a.api_key, '/v1/user/balance')).json()).toEqual({ credits: 105.5 });
    const listed = (await (await api!.admin('/v1/admin/accounts')).json()).data.find((x: { id: string }) => x.id === a.id);
    expect(listed.credits).toBe(105.5);
    expect(await (await api!.admin(`/v1/admin/accounts/${a.id}`)).json()).toMatchObject({ id: a.id, credits: 105.5 });
    expect((await credits.verify()).ok).toBe(true);
  });

  it('the caller sees its own account (shaped as Stability\'s) and pages its own ledger, newest first', async () => {
    const a = await (await create({ name: 'pager', credits: 1 })).json();
    const b = await (await create({ credits: 1 })).json();
    for (const amount of [2, 3, 4]) await grant(a.id, { amount });
    await grant(b.id, { amount: 9 });
    expect(await (await get(a.api_key, '/v1/user/account')).json()).toEqual({
      id: a.id,
      name: 'pager',
      // A string always, as Stability's spec (and its SDKs) require: none was given.
      email: '',
      profile_picture: null,
      organizations: [],
      created_at: expect.any(String),
      credits: 10,
      key: { id: a.key_id, scope: 'generate' },
    });
    const first = await (await get(a.api_key, '/v1/user/ledger?limit=3')).json();
    expect(first.data.map((e: { amount: number }) => e.amount)).toEqual([4, 3, 2]);
    expect(first.data[0]).toEqual({ id: expect.any(String), type: 'grant', amount: 4, job_id: null, reason: 'operator grant', charged: null, created_at: expect.any(String) });
    const second = await (await get(a.api_key, `/v1/user/ledger?limit=3&cursor=${first.next_cursor}`)).json();
    expect(second).toEqual({ data: [expect.objectContaining({ amount: 1, reason: 'starting grant' })], next_cursor: null });
    for (const query of ['cursor=nope', 'limit=0', 'limit=101']) expect((await get(a.api_key, `/v1/user/ledger?${query}`)).status, query).toBe(400);
  });

  it('documents the credit endpoints in /openapi.json', async () => {
    const doc = await (await fetch(api!.url + '/openapi.json')).json();
    for (const path of ['/v1/user/balance', '/v1/user/account', '/v1/user/ledger', '/v1/admin/accounts/{id}/credits']) expect(doc.paths[path], path).toBeDefined();
    const t2i = doc.paths['/v1/generation/{engine_id}/text-to-image'].post;
    expect(t2i.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['dry_run', 'Idempotency-Key']));
    for (const status of ['402', '409', '422', '429', '403']) expect(t2i.responses[status], status).toBeDefined();
    expect(doc.components.schemas.Job.properties.credits_charged).toBeDefined();
    expect(doc.components.schemas.Engine.properties.pricing).toBeDefined();
  });
});

describe('holds nobody closed', () => {
  it('a job that could not be queued (storage down) gives its hold back at once', async () => {
    const broken = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, ARTIFACTS_DIR: '/dev/null/artifacts' });
    try {
      const a = await broken.account('unlucky');
      const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toBuffer();
      const body = new FormData();
      body.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'image.png');
      const res = await fetch(`${broken.url}/v1/generation/up-x2/image-to-image/upscale`, { method: 'POST', body, headers: { authorization: `Bearer ${a.api_key}`, prefer: 'respond-async' } });
      // The storage's fault, said so: a 503 naming storage (not Redis), and readiness fails with it.
      const error = await res.json();
      expect({ status: res.status, name: error.name }).toEqual({ status: 503, name: 'service_unavailable' });
      expect(error.message).toMatch(/storage \(local\) could not store the upload/);
      expect(error.message).not.toMatch(/redis/i);
      const ready = await fetch(`${broken.url}/readyz`);
      expect(ready.status).toBe(503);
      expect((await ready.json()).message).toMatch(/^storage \(local\) (refuses writes|is unreachable)/);
      expect(await (await get(a.api_key, '/v1/user/balance')).json()).toEqual({ credits: 10 });
      const ledger = (await (await get(a.api_key, '/v1/user/ledger')).json()).data;
      expect(ledger.map((e: { type: string; reason: string | null }) => `${e.type}${e.reason ? ` ${e.reason}` : ''}`)).toEqual(['release not_enqueued', 'hold', 'grant starting grant']);
      expect((await credits.verify()).ok).toBe(true);
    } finally {
      await broken.close();
    }
  });

  it('the reconciler settles a job that ended while no API was listening, and releases holds whose job never existed', async () => {
    // No API listens while the job ends: the long-running one goes, and the one that accepts the job
    // is gone before it ends. The stub worker closes no hold.
    await api!.close();
    api = undefined;
    const first = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
    const worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: first.server.deps.storage, stepMs: 50 });
    const a = await first.account('orphan');
    const res = await fetch(`${first.url}/v1/generation/gen-a/text-to-image`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.api_key}`, 'content-type': 'application/json', prefer: 'respond-async' },
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }),
    });
    const job = await res.json();
    await first.close();
    // A hold with no job behind it (its API died between the hold and the enqueue).
    await credits.reserve(a.id, 'ghost-job', 1_000_000);
    // A legacy account: starting credits on its record, no ledger.
    await raw.hset(`${redis.prefix}:account:acct_legacy`, { id: 'acct_legacy', name: 'legacy', created_at: new Date().toISOString(), credits: '7.5' });
    await raw.zadd(`${redis.prefix}:accounts`, Date.now(), 'acct_legacy');
    const deadline = Date.now() + 10_000;
    const finishedOn = () => raw.hget(`${redis.prefix}:engine.gen-a:${job.id}`, 'finishedOn');
    while (!(await finishedOn()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await finishedOn()).toBeTruthy();
    expect((await credits.hold(job.id))?.state).toBe('held');

    // The next API process to sweep closes both, and moves the legacy credits to the ledger.
    const next = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, SWEEP_INTERVAL: '1', HOLD_GRACE: '1' });
    try {
      const until = Date.now() + 15_000;
      while ((await credits.openHolds()).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(await credits.hold(job.id)).toMatchObject({ state: 'settled' });
      expect(await credits.hold('ghost-job')).toMatchObject({ state: 'released', reason: 'job_gone' });
      const charged = (await (await fetch(`${next.url}/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${a.api_key}` } })).json()).credits_charged;
      expect(charged).toBe(0.01);
      expect(await credits.balance(a.id)).toBe(10_000_000 - 10_000);
      while ((await credits.balance('acct_legacy')) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(await credits.balance('acct_legacy')).toBe(7_500_000);
      expect(await raw.hget(`${redis.prefix}:account:acct_legacy`, 'credits')).toBeNull();
      const report = await credits.verify();
      expect(report.problems).toEqual([]);
    } finally {
      await next.close();
      await worker.close();
    }
  });
});
