/**
 * What the API decides when a job is asked for, over real HTTP with a real worker: 50 simultaneous
 * requests against a balance that covers 7, Idempotency-Key, the per-key rate limit and the per-account
 * active-job limit (both 429 with Retry-After), key scopes (403) and revocation (401 at once).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { type Service, spawnWorker, type ChildWorker, startService, waitFor } from '../e2e/support';
import { admin, balance, Books, call, createAccount, getJob, micro, type TestAccount } from './support';

/** tiny-sd, 128x128, 10 steps. */
const COST = 0.066667;
const BODY = { text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 3 };

let redis: TestRedis;
let service: Service;
let books: Books;
let worker: ChildWorker;

beforeAll(async () => {
  redis = await startTestRedis();
  // A small rate limit, so the test can reach it; every other limit at its default.
  service = await startService(redis, { env: { RATE_LIMIT: '60', RATE_LIMIT_WINDOW_MS: '3000', SWEEP_INTERVAL: '1' } });
  books = new Books(redis.url, redis.prefix);
  worker = spawnWorker(service, { ENGINES: 'tiny-sd' });
  await worker.ready;
});
afterAll(async () => {
  await worker?.kill('SIGKILL');
  books?.close();
  await service?.close();
  await redis?.close();
});

const generate = (account: TestAccount, headers: Record<string, string> = {}, body: Record<string, unknown> = BODY, engine = 'tiny-sd') =>
  call(service, account.api_key, `/v1/generation/${engine}/text-to-image`, { method: 'POST', headers: { prefer: 'respond-async', ...headers }, body: JSON.stringify(body) });

async function allDone(account: TestAccount) {
  await waitFor(async () => {
    const jobs = (await (await call(service, account.api_key, '/v1/jobs?limit=100')).json()).data as { status: string }[];
    return jobs.every((j) => ['succeeded', 'failed', 'canceled'].includes(j.status));
  }, 'every job to finish', 60_000);
}

describe('accepting jobs', () => {
  it('50 simultaneous requests against a balance that covers 7: exactly 7 accepted, 43 refused with 402', async () => {
    const account = await createAccount(service, { credits: 7 * COST + 0.05 });
    const answers = await Promise.all(Array.from({ length: 50 }, () => generate(account)));
    const statuses = answers.map((r) => r.status);
    // 202 (or 200 if a job already finished by the time its answer was written).
    expect(statuses.filter((s) => s === 202 || s === 200)).toHaveLength(7);
    expect(statuses.filter((s) => s === 402)).toHaveLength(43);
    const refusal = await answers.find((r) => r.status === 402)!.json();
    // Refused only once 7 are held, so every refusal sees what is left: 0.05.
    expect(refusal).toEqual({ id: expect.any(String), name: 'insufficient_balance', message: 'this request costs 0.066667 credits and the balance is 0.05' });
    await allDone(account);
    const report = await books.settled();
    expect(report.problems).toEqual([]);
    expect(micro(await balance(service, account.api_key))).toBe(micro(0.05));
    // Nothing was queued for a refusal: the account has exactly the 7 jobs.
    expect((await (await call(service, account.api_key, '/v1/jobs?limit=100')).json()).data).toHaveLength(7);
  });

  it('bad input is refused before anything is held: no charge for a 4xx', async () => {
    const account = await createAccount(service, { credits: 1 });
    for (const body of [{ steps: 10 }, { ...BODY, steps: 5 }, { ...BODY, width: 100 }, { ...BODY, sampler: 'K_NOPE' }]) {
      expect((await generate(account, {}, body)).status).toBe(400);
    }
    expect((await generate(account, {}, BODY, 'nope')).status).toBe(404);
    expect((await generate(account, { 'idempotency-key': '' })).status).toBe(400);
    expect(await balance(service, account.api_key)).toBe(1);
    const ledger = (await (await call(service, account.api_key, '/v1/user/ledger')).json()).data;
    expect(ledger.map((e: { type: string }) => e.type)).toEqual(['grant']);
  });
});

describe('Idempotency-Key', () => {
  it('the same key and body: one job, charged once, whatever the timing of the retries', async () => {
    const account = await createAccount(service, { credits: 1 });
    const headers = { 'idempotency-key': 'order-42' };
    const first = await generate(account, headers);
    expect(first.status).toBeLessThan(300);
    const job = await first.json();
    // A later retry, and five at once: all the same job.
    const again = await generate(account, headers);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await again.json()).id).toBe(job.id);
    const burst = await Promise.all(Array.from({ length: 5 }, () => generate(account, headers)));
    for (const res of burst) expect((await res.json()).id).toBe(job.id);
    // Keys belong to the account: another account's same key is its own request.
    const other = await createAccount(service, { credits: 1 });
    expect((await (await generate(other, headers)).json()).id).not.toBe(job.id);
    await allDone(account);
    await allDone(other);
    await books.settled();
    expect(micro(await balance(service, account.api_key))).toBe(micro(1) - micro(COST));
    expect((await (await call(service, account.api_key, '/v1/jobs')).json()).data).toHaveLength(1);
  });

  it('the same key with another body or endpoint: 422, nothing charged', async () => {
    const account = await createAccount(service, { credits: 1 });
    const headers = { 'idempotency-key': 'order-43' };
    expect((await generate(account, headers)).status).toBeLessThan(300);
    const other = await generate(account, headers, { ...BODY, seed: 4 });
    expect(other.status).toBe(422);
    expect((await other.json()).name).toBe('idempotency_key_mismatch');
    // Simultaneous first uses with different bodies: one wins, the other is 422 (or 409 while the first is accepted).
    const [a, b] = await Promise.all([generate(account, { 'idempotency-key': 'order-44' }, { ...BODY, seed: 5 }), generate(account, { 'idempotency-key': 'order-44' }, { ...BODY, seed: 6 })]);
    expect([a.status, b.status].map((x) => (x < 300 ? 'accepted' : x)).sort()).toEqual([422, 'accepted']);
    await allDone(account);
    await books.settled();
    expect(micro(await balance(service, account.api_key))).toBe(micro(1) - 2 * micro(COST));
  });
});

describe('limits', () => {
  it('rate limit per key: over it, 429 rate_limited with Retry-After; other keys are not affected', async () => {
    const account = await createAccount(service, { credits: 1 });
    const dry = (key: string) => call(service, key, '/v1/generation/tiny-sd/text-to-image?dry_run=true', { method: 'POST', body: JSON.stringify(BODY) });
    const answers = await Promise.all(Array.from({ length: 61 }, () => dry(account.api_key)));
    const limited = answers.filter((r) => r.status === 429);
    expect(answers.filter((r) => r.status === 200)).toHaveLength(60);
    expect(limited).toHaveLength(1);
    expect(Number(limited[0].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(limited[0].headers.get('retry-after'))).toBeLessThanOrEqual(3);
    expect((await limited[0].json()).name).toBe('rate_limited');
    const fresh = await createAccount(service, { credits: 1 });
    expect((await dry(fresh.api_key)).status).toBe(200);
    // Reading is not limited.
    expect((await call(service, account.api_key, '/v1/user/balance')).status).toBe(200);
  });

  it('at most 10 jobs queued or running per account: the 11th is 429 too_many_active_jobs with Retry-After, nothing held', async () => {
    const account = await createAccount(service, { credits: 15 });
    // Long jobs, so the first ten are still open when the eleventh arrives.
    const long = { ...BODY, steps: 150 };
    const accepted: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await generate(account, {}, long);
      expect(res.status).toBe(202);
      accepted.push((await res.json()).id as string);
    }
    const refused = await generate(account, {}, long);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    const body = await refused.json();
    expect(body.name).toBe('too_many_active_jobs');
    expect(body.message).toContain('10');
    expect(micro(await balance(service, account.api_key))).toBe(micro(15) - 10 * micro(1));
    // One canceled: room for one more.
    await call(service, account.api_key, `/v1/jobs/${accepted[9]}/cancel`, { method: 'POST' });
    await waitFor(async () => (await getJob(service, account.api_key, accepted[9])).status === 'canceled', 'the cancel');
    expect((await generate(account, {}, { ...BODY })).status).toBeLessThan(300);
    for (const id of accepted) await call(service, account.api_key, `/v1/jobs/${id}/cancel`, { method: 'POST' });
    await allDone(account);
    const report = await books.settled();
    expect(report.ok).toBe(true);
  });
});

describe('keys', () => {
  it('scopes: a read key reads but cannot generate or cancel (403); an admin key reaches the admin API', async () => {
    const account = await createAccount(service, { credits: 1 });
    const readKey = await (await admin(service, `/v1/admin/accounts/${account.id}/keys`, { method: 'POST', body: JSON.stringify({ scope: 'read' }) })).json();
    expect(readKey.scope).toBe('read');
    const reader = { ...account, api_key: readKey.api_key };
    const job = await (await generate(account)).json();
    for (const path of ['/v1/user/balance', '/v1/user/account', '/v1/user/ledger', '/v1/jobs', `/v1/jobs/${job.id}`, '/v1/engines/list']) {
      expect((await call(service, reader.api_key, path)).status, path).toBe(200);
    }
    expect(await (await call(service, reader.api_key, '/v1/user/account')).json()).toMatchObject({ id: account.id, organizations: [], key: { scope: 'read' } });
    const denied = await generate(reader);
    expect(denied.status).toBe(403);
    expect((await denied.json()).name).toBe('permission_denied');
    expect((await call(service, reader.api_key, `/v1/jobs/${job.id}/cancel`, { method: 'POST' })).status).toBe(403);
    expect((await call(service, account.api_key, '/v1/admin/accounts')).status).toBe(403);

    const adminKey = await (await admin(service, `/v1/admin/accounts/${account.id}/keys`, { method: 'POST', body: JSON.stringify({ scope: 'admin' }) })).json();
    expect((await call(service, adminKey.api_key, '/v1/admin/accounts')).status).toBe(200);
    const granted = await call(service, adminKey.api_key, `/v1/admin/accounts/${account.id}/credits`, { method: 'POST', body: JSON.stringify({ amount: 2, reason: 'support' }) });
    expect(granted.status).toBe(201);
    // An admin key generates too.
    expect((await generate({ ...account, api_key: adminKey.api_key })).status).toBeLessThan(300);
    await allDone(account);
  });

  it('a revoked key is refused at once (401)', async () => {
    const account = await createAccount(service, { credits: 1 });
    expect((await call(service, account.api_key, '/v1/user/balance')).status).toBe(200);
    expect((await admin(service, `/v1/admin/keys/${account.key_id}`, { method: 'DELETE' })).status).toBe(200);
    const res = await generate(account);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect((await call(service, account.api_key, '/v1/user/balance')).status).toBe(401);
  });
});
