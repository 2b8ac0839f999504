/**
 * The decisions @sdq/jobs makes for every process that answers for a job: a queue state as a job status,
 * the job object (error, artifacts as signed URLs, charge), and the hold closed from that same status,
 * with real Redis (records and credits) and real local storage. The queue's snapshots are plain data
 * here, each state BullMQ reports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatFailedReason, type JobStatus } from '@sdq/contracts';
import { CreditsService } from '@sdq/credits';
import { LocalStorage } from '@sdq/storage';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import type { QueueJobSnapshot } from '../src/engine-queues';
import { JobCharge } from '../src/charge';
import { JobView } from '../src/job-view';
import { type JobRecord, JobRecords } from '../src/records';

let redis: TestRedis;
let client: Redis;
let records: JobRecords;
let credits: CreditsService;
let view: JobView;
const dir = mkdtempSync(join(tmpdir(), 'sdq-jobs-test-'));
let position: number | null = 3;

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  records = new JobRecords(client, redis.prefix);
  credits = new CreditsService(client, { prefix: redis.prefix });
  const storage = new LocalStorage({ dir, publicUrl: 'http://sdq.test', secret: 'jobs-test-secret-0123456789' });
  view = new JobView({
    config: { publicUrl: 'http://sdq.test', artifactUrlExpiry: 60 },
    store: records,
    queue: { snapshot: async () => undefined, position: async () => position },
    storage,
    credits,
    charge: new JobCharge({ credits, logger: pino({ level: 'silent' }) }),
    logger: pino({ level: 'silent' }),
  });
});
afterAll(async () => {
  client?.disconnect();
  await redis?.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A job with a 2-credit hold, saved as the API saves one. */
async function job(fields: Partial<JobRecord> = {}): Promise<JobRecord> {
  const id = `job-${++n}`;
  const account = `acct-${n}`;
  await credits.grantStarting(account, 10_000_000);
  const held = await credits.reserve(account, id, 2_000_000);
  expect(held.ok).toBe(true);
  const record: JobRecord = { id, account_id: account, engine: 'tiny-sd', kind: 'text-to-image', created_at: Date.now(), seq: 0, params: JSON.stringify({ steps: 10 }), ...fields };
  await records.saveNewJob(record, Date.now() + 60_000);
  return record;
}

const snap = (state: QueueJobSnapshot['state'], more: Partial<QueueJobSnapshot> = {}): QueueJobSnapshot => ({ state, progress: null, result: null, ...more });

describe('a queue state as a job status', () => {
  const rows: [string, QueueJobSnapshot | undefined, Partial<JobRecord>, JobStatus][] = [
    ['waiting', snap('waiting'), {}, 'queued'],
    ['prioritized', snap('prioritized'), {}, 'queued'],
    ['delayed (a retry backing off)', snap('delayed'), {}, 'queued'],
    ['caught between lists', snap('unknown'), {}, 'queued'],
    ['active', snap('active'), {}, 'running'],
    ['completed', snap('completed'), {}, 'succeeded'],
    ['failed', snap('failed', { failedReason: formatFailedReason('invalid_prompts', 'bad') }), {}, 'failed'],
    ['failed as canceled', snap('failed', { failedReason: formatFailedReason('canceled', 'the job was canceled') }), {}, 'canceled'],
    ['gone, canceled while queued', undefined, { canceled_at: 1 }, 'canceled'],
    ['gone, no reason kept', undefined, {}, 'failed'],
  ];
  it.each(rows)('%s', (_, snapshot, fields, status) => {
    expect(view.status({ id: 'x', account_id: 'a', engine: 'e', kind: 'text-to-image', created_at: 0, seq: 1, ...fields }, snapshot)).toBe(status);
  });
});

describe('the job object and its hold', () => {
  it('a succeeded job: signed artifact URLs, the hold settled once, its charge', async () => {
    const record = await job();
    const done = snap('completed', { processedOn: 1000, finishedOn: 2000, result: { artifacts: [{ key: `generations/${record.id}/0.png`, seed: 7, finish_reason: 'SUCCESS', content_type: 'image/png', width: 128, height: 128 }] } });
    await view.closeHold(record.id, { record, snapshot: done });
    await view.closeHold(record.id, { record, snapshot: done });
    const object = await view.describe(record, done);
    expect(object).toMatchObject({ id: record.id, status: 'succeeded', error: null, credits_charged: 2, queue_position: null, params: { steps: 10 }, finished_at: new Date(2000).toISOString() });
    expect(object.artifacts[0].url).toMatch(new RegExp(`^http://sdq.test/v1/artifacts/generations/${record.id}/0.png\\?expires=\\d+&signature=[0-9a-f]{64}$`));
    expect(await credits.balance(record.account_id)).toBe(8_000_000);
  });

  it('a failed job: its catalogue error, the hold released in full', async () => {
    const record = await job();
    const failed = snap('failed', { failedReason: formatFailedReason('invalid_mask_image', 'mask: is empty'), finishedOn: 3000 });
    await view.closeHold(record.id, { record, snapshot: failed });
    expect(await view.describe(record, failed)).toMatchObject({ status: 'failed', error: { name: 'invalid_mask_image', message: 'mask: is empty' }, credits_charged: 0, artifacts: [] });
    expect(await credits.balance(record.account_id)).toBe(10_000_000);
  });

  it('a job gone from its queue: canceled or unserved as its record says, released; an unknown loss is internal_error', async () => {
    const canceled = await job({ canceled_at: 5000 });
    await view.closeHold(canceled.id, { record: canceled, snapshot: undefined });
    expect(await view.describe(canceled, undefined)).toMatchObject({ status: 'canceled', error: { name: 'canceled' }, credits_charged: 0, finished_at: new Date(5000).toISOString() });
    const unserved = await job({ unserved_at: 6000 });
    expect((await view.describe(unserved, undefined)).error).toMatchObject({ name: 'engine_unavailable' });
    const lost = await job();
    await view.closeHold(lost.id);
    expect(await view.describe(lost, undefined)).toMatchObject({ status: 'failed', error: { name: 'internal_error' }, credits_charged: 0 });
    expect(await credits.balance(lost.account_id)).toBe(10_000_000);
  });

  it('an unfinished job keeps its hold; a queued one shows its position, in one read when just queued', async () => {
    const record = await job();
    await view.closeHold(record.id, { record, snapshot: snap('active') });
    expect(await credits.charged(record.id)).toBeNull();
    expect(await view.describe(record, snap('waiting'))).toMatchObject({ status: 'queued', queue_position: 3, credits_charged: null, finished_at: null });
    expect(await view.describeQueued(record)).toMatchObject({ status: 'queued', queue_position: 3, params: { steps: 10 } });
    expect(await credits.balance(record.account_id)).toBe(8_000_000);
  });
});
