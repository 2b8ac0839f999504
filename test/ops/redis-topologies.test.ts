/**
 * REDIS_URL's three topologies, against real servers started from redis-server: a three-master Redis
 * Cluster and a master behind a Sentinel. In each, a job goes end to end through the API, the real worker
 * and the webhook delivery process (queued, run, charged, delivered), and a queued job is canceled. In
 * the cluster, the keys it left obey the hash-tag rule: sdq's own keys share the `{<prefix>}` slot (its
 * scripts span them), each BullMQ queue's keys share their queue's tag, and the queues' tags differ.
 */
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRedisUrl } from '@sdq/contracts';
import { CreditsService } from '@sdq/credits';
import { parseConfig as parseDeliveryConfig } from '../../apps/webhooks/src/config';
import { startDeliveryProcess } from '../../apps/webhooks/src/delivery-process';
import { startReceiver } from '../../packages/webhooks/test/support/receiver';
import { accountWith, ARTIFACT_URL_SECRET, authed, startService, startTestWorker, waitFor } from '../e2e/support';
import { startRedisCluster, startRedisSentinel, type Topology } from '../support/redis-topologies';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

describe('REDIS_URL forms', () => {
  it('parses one server, Sentinel and Cluster URLs, and refuses malformed ones', () => {
    expect(parseRedisUrl('redis://:p%40ss@db:6380/2')).toEqual({ kind: 'standalone', options: { host: 'db', port: 6380, password: 'p@ss', db: 2 } });
    expect(parseRedisUrl('redis+sentinel://u:pw@s1:26379,s2/mymaster/1?sentinel_password=spw')).toEqual({
      kind: 'sentinel',
      options: { username: 'u', password: 'pw', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'mymaster', db: 1, sentinelPassword: 'spw' },
    });
    expect(parseRedisUrl('rediss+cluster://:pw@n1:7000,n2:7001,[::1]:7002')).toEqual({
      kind: 'cluster',
      nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }, { host: '::1', port: 7002 }],
      options: { password: 'pw', tls: {} },
    });
    expect(() => parseRedisUrl('redis+sentinel://s1:26379')).toThrow(/names its master/);
    expect(() => parseRedisUrl('redis+cluster://n1:7000/3')).toThrow(/no path/);
    expect(() => parseRedisUrl('http://x')).toThrow(/scheme/);
    expect(() => parseDeliveryConfig({ REDIS_URL: 'redis+cluster://a:b:c' })).toThrow(/REDIS_URL must be redis/);
  });
});

/** A job with a webhook, end to end, and a canceled queued one; returns the job id and the prefix used. */
async function endToEnd(topology: Topology): Promise<{ prefix: string; jobId: string }> {
  const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
  const service = await startService({ url: topology.url, prefix, stop: async () => {}, restart: async () => {}, removeKeys: async () => {}, close: async () => {} }, { env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
  cleanups.push(() => service.close());
  const receiver = await startReceiver();
  cleanups.push(() => receiver.close());
  const delivery = await startDeliveryProcess(
    parseDeliveryConfig({ ...service.env, PUBLIC_URL: service.server.deps.config.publicUrl, ARTIFACT_URL_SECRET, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_HEALTH_PORT: '0', WEBHOOK_HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'silent' }),
    pino({ level: 'silent' }),
  );
  cleanups.push(() => delivery.close());
  const worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
  cleanups.push(() => worker.close(1000));
  const key = await accountWith(service, 'topology', 100);

  const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
    method: 'POST',
    headers: authed(key, { 'content-type': 'application/json', prefer: 'wait=30' }),
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 5, webhook: receiver.url('/hook') }),
  });
  const job = (await res.json()) as { id: string; status: string; credits_charged: number; artifacts: { url: string }[] };
  expect(job.status).toBe('succeeded');
  expect((await fetch(job.artifacts[0].url)).status).toBe(200);
  await waitFor(async () => receiver.requests.length > 0, 'the webhook', 15_000);
  expect(JSON.parse(receiver.requests[0].body)).toMatchObject({ type: 'job.completed', data: { id: job.id, status: 'succeeded' } });
  await waitFor(async () => ((await (await fetch(`${service.url}/v1/jobs/${job.id}`, { headers: authed(key) })).json()) as { credits_charged: number | null }).credits_charged! > 0, 'the charge');

  // cancel: a queued job behind a long one (first), then the long one while it runs
  const submitLong = async () =>
    ((await (await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }), body: JSON.stringify({ text_prompts: [{ text: 'x' }], steps: 150 }) })).json()) as { id: string }).id;
  const running = await submitLong();
  const queued = await submitLong();
  for (const id of [queued, running]) {
    const canceled = await fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers: authed(key) });
    expect(canceled.status).toBeLessThan(300);
    const ended = await waitFor(async () => {
      const j = (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as { status: string; credits_charged: number | null };
      return j.status === 'canceled' && j.credits_charged !== null && j;
    }, 'the cancel');
    expect(ended.credits_charged).toBe(0);
  }
  const report = await new CreditsService(service.server.deps.store.redis, { prefix: service.server.deps.config.keyPrefix }).verify();
  expect(report.problems).toEqual([]);
  return { prefix, jobId: job.id };
}

describe('Redis Cluster (redis+cluster://)', () => {
  it('runs a job end to end, cancels, and its keys obey the hash-tag rule', async () => {
    const cluster = await startRedisCluster();
    cleanups.push(() => cluster.close());
    const { prefix } = await endToEnd(cluster);

    // every key of this run, from every master, with its slot
    const keys: { key: string; slot: number }[] = [];
    for (const server of cluster.servers) {
      const node = new Redis(server);
      try {
        let cursor = '0';
        do {
          const [next, batch] = await node.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
          for (const key of batch) keys.push({ key, slot: Number(await node.cluster('KEYSLOT', key)) });
          cursor = next;
        } while (cursor !== '0');
      } finally {
        node.disconnect();
      }
    }
    const own = keys.filter((k) => k.key.startsWith(`{${prefix}}:`));
    const queued = keys.filter((k) => k.key.startsWith(`${prefix}:{`));
    expect(own.length + queued.length).toBe(keys.length);
    expect(own.map((k) => k.key)).toEqual(expect.arrayContaining([`{${prefix}}:engines`, `{${prefix}}:job-seq`]));
    expect(new Set(own.map((k) => k.slot)).size).toBe(1);
    const byQueue = new Map<string, Set<number>>();
    for (const { key, slot } of queued) {
      const tag = /^[^:]+:\{([^}]+)\}:/.exec(key)![1];
      byQueue.set(tag, (byQueue.get(tag) ?? new Set()).add(slot));
    }
    expect([...byQueue.keys()]).toEqual(expect.arrayContaining(['engine.tiny-sd', 'webhooks.delivery']));
    for (const slots of byQueue.values()) expect(slots.size).toBe(1);
    console.log(`cluster: ${keys.length} keys; own keys in slot ${own[0].slot}; queues ${[...byQueue].map(([q, s]) => `${q}=${[...s][0]}`).join(', ')}`);
  }, 180_000);
});

describe('Redis Sentinel (redis+sentinel://)', () => {
  it('runs a job end to end through the master the Sentinel names, and cancels', async () => {
    const sentinel = await startRedisSentinel();
    cleanups.push(() => sentinel.close());
    const { prefix, jobId } = await endToEnd(sentinel);
    const master = new Redis(sentinel.servers[0]);
    try {
      // the data is on the master the sentinel pointed at, under the plain prefix
      expect(await master.exists(`${prefix}:job:${jobId}`)).toBe(1);
    } finally {
      master.disconnect();
    }
  }, 180_000);
});
