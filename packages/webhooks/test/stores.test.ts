import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccountWebhooks } from '../src/account-webhooks.store';
import { DeliveryLog, redactUrl } from '../src/deliveries.store';
import { ProgressThrottle } from '../src/progress-throttle';
import { nextAttempt } from '../src/retry-policy';
import { signatureHeaders, verify } from '../src/signing';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let testRedis: TestRedis;
let redis: Redis;
beforeAll(async () => {
  testRedis = await startTestRedis();
  redis = new Redis(testRedis.url);
});
afterAll(async () => {
  redis.disconnect();
  await testRedis.close();
});

describe('AccountWebhooks: secrets', () => {
  it('makes one secret per account on first use, the same for concurrent callers', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix);
    const secrets = await Promise.all(Array.from({ length: 10 }, () => accounts.secret('acct_first')));
    expect(new Set(secrets).size).toBe(1);
    expect(secrets[0]).toMatch(/^whsec_/);
    expect(await accounts.secret('acct_first')).toBe(secrets[0]);
    expect(await accounts.secret('acct_other')).not.toBe(secrets[0]);
    expect(await redis.hget(`${testRedis.prefix}:webhooks:account:acct_first`, 'secret')).toBe(secrets[0]);
  });

  it('rotates: both secrets sign during the grace period, only the new one after it', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix, { graceMs: 400 });
    const old = await accounts.secret('acct_rot');
    const rotated = await accounts.rotate('acct_rot');
    expect(rotated.secret).not.toBe(old);
    expect(await accounts.secret('acct_rot')).toBe(rotated.secret);
    expect(Date.parse(rotated.previous_valid_until!)).toBeGreaterThan(Date.now());

    const signing = await accounts.signingSecrets('acct_rot');
    expect(signing).toEqual([rotated.secret, old]);
    const body = '{"type":"job.completed"}';
    const headers = signatureHeaders({ id: 'msg_1', timestamp: Math.floor(Date.now() / 1000), body }, signing);
    expect(verify(old, body, headers)).toBe(true);
    expect(verify(rotated.secret, body, headers)).toBe(true);

    await sleep(500);
    expect(await accounts.signingSecrets('acct_rot')).toEqual([rotated.secret]);
  });

  it('keeps every replaced secret in its grace period, up to the limit', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix, { graceMs: 60_000, maxPreviousSecrets: 2 });
    const first = await accounts.secret('acct_many');
    const second = (await accounts.rotate('acct_many')).secret;
    const third = (await accounts.rotate('acct_many')).secret;
    expect(await accounts.signingSecrets('acct_many')).toEqual([third, second, first]);
    const fourth = (await accounts.rotate('acct_many')).secret;
    expect(await accounts.signingSecrets('acct_many')).toEqual([fourth, third, second]);
  });

  it('rotating an account without a secret just makes one; grace 0 drops the old one at once', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix, { graceMs: 0 });
    const made = await accounts.rotate('acct_new');
    expect(made.previous_valid_until).toBeNull();
    expect(await accounts.signingSecrets('acct_new')).toEqual([made.secret]);
    const next = await accounts.rotate('acct_new');
    expect(await accounts.signingSecrets('acct_new')).toEqual([next.secret]);
  });
});

describe('AccountWebhooks: default webhook URL', () => {
  it('sets, gets, disables (only the URL it was for) and enables again by setting', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix);
    expect(await accounts.getDefaultWebhook('acct_url')).toBeUndefined();
    expect(await accounts.disableDefaultWebhook('acct_url', { reason: 'gone' })).toBe(false);

    await accounts.setDefaultWebhook('acct_url', 'https://a.example.com/hook');
    expect(await accounts.getDefaultWebhook('acct_url')).toMatchObject({ url: 'https://a.example.com/hook', enabled: true, disabled_at: null });
    // A 410 from an older URL does not disable the current one.
    expect(await accounts.disableDefaultWebhook('acct_url', { reason: 'gone', ifUrl: 'https://old.example.com/hook' })).toBe(false);
    expect(await accounts.disableDefaultWebhook('acct_url', { reason: 'gone', ifUrl: 'https://a.example.com/hook' })).toBe(true);
    expect(await accounts.disableDefaultWebhook('acct_url', { reason: 'gone' })).toBe(false);
    const disabled = await accounts.getDefaultWebhook('acct_url');
    expect(disabled).toMatchObject({ url: 'https://a.example.com/hook', enabled: false, disabled_reason: 'gone' });
    expect(Date.parse(disabled!.disabled_at!)).toBeGreaterThan(0);

    await accounts.setDefaultWebhook('acct_url', 'https://b.example.com/hook');
    expect(await accounts.getDefaultWebhook('acct_url')).toMatchObject({ url: 'https://b.example.com/hook', enabled: true, disabled_reason: null });
    await accounts.removeDefaultWebhook('acct_url');
    expect(await accounts.getDefaultWebhook('acct_url')).toBeUndefined();
  });

  it('keeps the secret when the URL changes, and forgets all with the account', async () => {
    const accounts = new AccountWebhooks(redis, testRedis.prefix);
    const secret = await accounts.secret('acct_gone');
    await accounts.setDefaultWebhook('acct_gone', 'https://a.example.com/');
    await accounts.removeDefaultWebhook('acct_gone');
    expect(await accounts.secret('acct_gone')).toBe(secret);
    await accounts.rotate('acct_gone');
    await accounts.removeAccount('acct_gone');
    expect(await redis.keys(`${testRedis.prefix}:webhooks:account:acct_gone*`)).toEqual([]);
  });
});

describe('ProgressThrottle', () => {
  it('lets one progress event per job and window through, across instances (processes)', async () => {
    const a = new ProgressThrottle(redis, testRedis.prefix, { intervalMs: 300 });
    const b = new ProgressThrottle(new Redis(testRedis.url), testRedis.prefix, { intervalMs: 300 });
    const first = await Promise.all([a.allowProgress('job_t'), b.allowProgress('job_t'), a.allowProgress('job_t'), b.allowProgress('job_t')]);
    expect(first.filter(Boolean)).toHaveLength(1);
    expect(await a.allowProgress('job_other')).toBe(true);
    await sleep(350);
    expect(await b.allowProgress('job_t')).toBe(true);
    (b as unknown as { redis: Redis }).redis.disconnect();
  });

  it('lets no progress through once the job completed', async () => {
    const throttle = new ProgressThrottle(redis, testRedis.prefix, { intervalMs: 10 });
    expect(await throttle.isCompleted('job_c')).toBe(false);
    await throttle.markCompleted('job_c');
    expect(await throttle.isCompleted('job_c')).toBe(true);
    expect(await throttle.allowProgress('job_c')).toBe(false);
    expect(await throttle.beginProgressSend('job_c', 'dlv_1', 1000)).toBe(false);
  });

  it('makes the completed delivery wait for progress deliveries in flight', async () => {
    const throttle = new ProgressThrottle(redis, testRedis.prefix);
    expect(await throttle.beginProgressSend('job_w', 'dlv_p1', 5000)).toBe(true);
    expect(await throttle.beginProgressSend('job_w', 'dlv_p2', 5000)).toBe(true);
    await throttle.markCompleted('job_w');
    expect(await throttle.waitForProgressSends('job_w', 50)).toBe(false);

    const started = Date.now();
    setTimeout(() => void throttle.endProgressSend('job_w', 'dlv_p1'), 100);
    setTimeout(() => void throttle.endProgressSend('job_w', 'dlv_p2'), 200);
    expect(await throttle.waitForProgressSends('job_w', 2000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('does not wait on a progress delivery whose process died (its entry expires)', async () => {
    const throttle = new ProgressThrottle(redis, testRedis.prefix);
    expect(await throttle.beginProgressSend('job_dead', 'dlv_x', 100)).toBe(true);
    const started = Date.now();
    expect(await throttle.waitForProgressSends('job_dead', 2000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    await throttle.removeJob('job_dead');
  });
});

describe('DeliveryLog', () => {
  const base = { jobId: 'job_log', accountId: 'acct_1', url: 'https://hooks.example.com/sdq?token=s3cret&v=2', source: 'job' as const, body: '{"type":"job.completed"}' };

  it('creates a delivery once per event key, even when emitted concurrently', async () => {
    const log = new DeliveryLog(redis, testRedis.prefix);
    const results = await Promise.all(Array.from({ length: 5 }, () => log.create({ ...base, jobId: 'job_idem', event: 'job.completed', eventKey: 'job.completed' })));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.record.id)).size).toBe(1);
    expect(await log.list('job_idem')).toHaveLength(1);
    // Without a key (progress, redeliveries) every create is a new delivery.
    await log.create({ ...base, jobId: 'job_idem', event: 'job.progress' });
    await log.create({ ...base, jobId: 'job_idem', event: 'job.progress' });
    expect(await log.list('job_idem')).toHaveLength(3);
  });

  it('records attempts and shows them for GET /v1/jobs/{id}/webhooks, without the URL query values', async () => {
    const log = new DeliveryLog(redis, testRedis.prefix);
    const { record } = await log.create({ ...base, event: 'job.completed', eventKey: 'job.completed' });
    expect(record).toMatchObject({ state: 'pending', attempts: 0 });
    expect(record.id).toMatch(/^dlv_[0-9a-f]{24}$/);
    expect(record.webhookId).toMatch(/^msg_[0-9a-f]{24}$/);

    const t0 = Date.UTC(2024, 0, 1);
    const failed = { ok: false, status: 500, error: 'http_error' as const, durationMs: 12, responseSnippet: 'oops' };
    await log.recordAttempt(record.id, 1, failed, { retry: true, delayMs: 5000 }, t0);
    expect(await log.get(record.id)).toMatchObject({ state: 'retrying', attempts: 1, lastStatus: 500, nextRetryAt: t0 + 5000 });
    const timeout = { ok: false, error: 'timeout' as const, durationMs: 10_000, responseSnippet: '' };
    await log.recordAttempt(record.id, 2, timeout, nextAttempt(2, timeout, { random: () => 0.5 }), t0 + 5000);
    const ok = { ok: true, status: 200, durationMs: 8, responseSnippet: 'thanks' };
    await log.recordAttempt(record.id, 3, ok, nextAttempt(3, ok), t0 + 400_000);

    const [view] = await log.list('job_log');
    expect(view).toEqual({
      id: record.id,
      event: 'job.completed',
      webhook_id: record.webhookId,
      url: 'https://hooks.example.com/sdq?token=***&v=***',
      state: 'succeeded',
      attempts: 3,
      status: 200,
      error: null,
      duration_ms: 8,
      last_attempt_at: new Date(t0 + 400_000).toISOString(),
      next_retry_at: null,
      final_reason: 'delivered',
      created_at: new Date(record.createdAt).toISOString(),
      redelivery_of: null,
      history: [
        { attempt: 1, at: new Date(t0).toISOString(), status: 500, error: 'http_error', duration_ms: 12, next_retry_at: new Date(t0 + 5000).toISOString(), response: 'oops' },
        { attempt: 2, at: new Date(t0 + 5000).toISOString(), status: null, error: 'timeout', duration_ms: 10_000, next_retry_at: new Date(t0 + 5000 + 300_000).toISOString(), response: '' },
        { attempt: 3, at: new Date(t0 + 400_000).toISOString(), status: 200, error: null, duration_ms: 8, next_retry_at: null, response: 'thanks' },
      ],
    });
    // The full URL and body stay in the record, for redelivery.
    expect(await log.get(record.id)).toMatchObject({ url: base.url, body: base.body });
  });

  it('marks a final failure and a superseded progress delivery', async () => {
    const log = new DeliveryLog(redis, testRedis.prefix);
    const { record } = await log.create({ ...base, jobId: 'job_fail', event: 'job.completed' });
    const refused = { ok: false, error: 'ssrf_refused' as const, durationMs: 1, responseSnippet: '' };
    await log.recordAttempt(record.id, 1, refused, nextAttempt(1, refused));
    const progress = (await log.create({ ...base, jobId: 'job_fail', event: 'job.progress' })).record;
    await log.skip(progress.id, 'superseded');
    const views = await log.list('job_fail');
    expect(views.map((v) => [v.event, v.state, v.final_reason, v.error])).toEqual([
      ['job.completed', 'failed', 'ssrf_refused', 'ssrf_refused'],
      ['job.progress', 'skipped', 'superseded', null],
    ]);
  });

  it('expires records after the retention period and removes a job on request', async () => {
    const log = new DeliveryLog(redis, testRedis.prefix, 60_000);
    const { record } = await log.create({ ...base, jobId: 'job_rm', event: 'job.started', eventKey: 'job.started' });
    const ttl = await redis.pttl(`${testRedis.prefix}:webhooks:delivery:${record.id}`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await log.removeJob('job_rm');
    expect(await log.get(record.id)).toBeUndefined();
    expect(await log.list('job_rm')).toEqual([]);
    expect(await redis.keys(`${testRedis.prefix}:webhooks:job:job_rm:*`)).toEqual([]);
  });

  it('redacts URLs for display', () => {
    expect(redactUrl('https://h.example.com/a/b?x=1&x=2&y')).toBe('https://h.example.com/a/b?x=***&y=***');
    expect(redactUrl('https://h.example.com/a')).toBe('https://h.example.com/a');
    expect(redactUrl('nope')).toBe('');
  });
});
