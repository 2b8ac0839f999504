/**
 * The job event stream against real Redis: what the log appends, that the group reads each entry once
 * across readers and on from its last position after a stop, and that an entry a dead reader held is
 * taken over.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { JobEventLog, JobEventReader, type JobEventType, jobEventStream, PROGRESS_EVERY_MS } from '../src/job-events';

let redis: TestRedis;
const clients: Redis[] = [];
const logger = pino({ level: 'silent' });
let n = 0;

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await redis?.close();
});

const client = () => {
  const c = new Redis(redis.url);
  clients.push(c);
  return c;
};
const until = async (check: () => boolean, what: string, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

function reader(prefix: string, seen: [string, JobEventType][], opts: { claimIdleMs?: number; consumer?: string } = {}): JobEventReader {
  const r = new JobEventReader({ redis: client(), keyPrefix: prefix, consumer: opts.consumer ?? `c${++n}`, logger, blockMs: 100, claimIdleMs: opts.claimIdleMs });
  r.start(async (jobId, type) => {
    seen.push([jobId, type]);
  });
  return r;
}

describe('the job event stream', () => {
  it('appends every event but progress more often than PROGRESS_EVERY_MS per job', async () => {
    const prefix = `${redis.prefix}:a`;
    const log = new JobEventLog(client(), prefix, logger);
    await log.publish('j1', 'active');
    for (let i = 0; i < 5; i++) await log.publish('j1', 'progress');
    await log.publish('j2', 'progress');
    await new Promise((r) => setTimeout(r, PROGRESS_EVERY_MS + 20));
    await log.publish('j1', 'progress');
    await log.publish('j1', 'completed');
    const entries = (await client().xrange(jobEventStream(prefix), '-', '+')).map(([, f]) => `${f[1]}:${f[3]}`);
    expect(entries).toEqual(['j1:active', 'j1:progress', 'j2:progress', 'j1:progress', 'j1:completed']);
  });

  it('reads entries appended before the group existed, each once across readers, in order per reader', async () => {
    const prefix = `${redis.prefix}:b`;
    const log = new JobEventLog(client(), prefix, logger);
    // a fresh deployment: the first jobs end before any delivery process reads
    await log.publish('early', 'completed');
    const seen: [string, JobEventType][] = [];
    const [a, b] = [reader(prefix, seen), reader(prefix, seen)];
    for (let i = 0; i < 20; i++) await log.publish(`j${i}`, 'completed');
    await until(() => seen.length >= 21, '21 entries');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.map(([id]) => id).sort()).toEqual(['early', ...Array.from({ length: 20 }, (_, i) => `j${i}`)].sort());
    await Promise.all([a.stop(), b.stop()]);
  });

  it('goes on from its last position after a stop: what was appended meanwhile is read, nothing twice', async () => {
    const prefix = `${redis.prefix}:c`;
    const log = new JobEventLog(client(), prefix, logger);
    const seen: [string, JobEventType][] = [];
    const first = reader(prefix, seen);
    await log.publish('before', 'completed');
    await until(() => seen.length === 1, 'the first entry');
    await first.stop();
    await log.publish('while-down', 'completed');
    await log.publish('while-down', 'failed');
    const again = reader(prefix, seen);
    await until(() => seen.length === 3, 'the entries appended while down');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toEqual([
      ['before', 'completed'],
      ['while-down', 'completed'],
      ['while-down', 'failed'],
    ]);
    await again.stop();
  });

  it("takes over an entry a reader that died had read but not acknowledged", async () => {
    const prefix = `${redis.prefix}:d`;
    const stream = jobEventStream(prefix);
    const raw = client();
    await raw.xgroup('CREATE', stream, 'webhooks', '0', 'MKSTREAM');
    await new JobEventLog(raw, prefix, logger).publish('orphan', 'completed');
    // read by a process that then died: pending, never acknowledged
    await raw.xreadgroup('GROUP', 'webhooks', 'dead', 'COUNT', 10, 'STREAMS', stream, '>');
    const seen: [string, JobEventType][] = [];
    const live = reader(prefix, seen, { claimIdleMs: 200 });
    await until(() => seen.length === 1, 'the orphaned entry');
    expect(seen).toEqual([['orphan', 'completed']]);
    await new Promise((r) => setTimeout(r, 300));
    const pending = (await raw.xpending(stream, 'webhooks')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    await live.stop();
  });

  it('stops at once with Redis unreachable (a delivery process shutting down during an outage)', async () => {
    const gone = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: null, retryStrategy: () => 200 });
    gone.on('error', () => {});
    const r = new JobEventReader({ redis: gone, keyPrefix: `${redis.prefix}:e`, consumer: 'x', logger, blockMs: 100 });
    r.start(async () => {});
    await new Promise((res) => setTimeout(res, 300));
    const started = performance.now();
    await r.stop();
    expect(performance.now() - started).toBeLessThan(1500);
  });
});
