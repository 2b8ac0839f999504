/**
 * REDIS_URL and its three topologies, for every process and every connection (ioredis and BullMQ):
 *
 *   redis://[user:password@]host:port[/db]          one server (rediss:// for TLS)
 *   redis+sentinel://[user:password@]h1:26379,h2:26379/<master name>[/<db>][?sentinel_password=...]
 *   redis+cluster://[user:password@]h1:7000,h2:7001  a Redis Cluster (rediss+cluster:// for TLS)
 *
 * In a cluster every multi-key command and script must stay in one hash slot. sdq's keys therefore carry
 * hash tags there: its own records under `{<prefix>}:...` (one slot: the credit scripts span an account's
 * ledger, balance and holds), and each BullMQ queue under its own tag, `<prefix>:{engine.<id>}:...`, so
 * the queues spread over the cluster's nodes. On one server or behind Sentinel the keys are as before.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { DEFAULT_QUEUE_PREFIX } from './queues';

export type RedisTopology =
  | { kind: 'standalone'; options: RedisOptions }
  | { kind: 'sentinel'; options: RedisOptions }
  | { kind: 'cluster'; nodes: { host: string; port: number }[]; options: RedisOptions };

const MULTI_HOST = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#@]+)(\/[^?#]*)?(\?[^#]*)?$/;

function hosts(list: string, defaultPort: number): { host: string; port: number }[] {
  return list.split(',').map((entry) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(entry.trim());
    if (!m) throw new Error(`host ${JSON.stringify(entry)} is not host[:port]`);
    return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : defaultPort };
  });
}

/** Parses a REDIS_URL; throws an Error naming what is wrong. */
export function parseRedisUrl(url: string): RedisTopology {
  const multi = MULTI_HOST.exec(url);
  if (multi) {
    const [, scheme, kind, user, password, list, path, query] = multi;
    const auth: RedisOptions = {
      ...(user ? { username: decodeURIComponent(user) } : {}),
      ...(password ? { password: decodeURIComponent(password) } : {}),
      ...(scheme === 'rediss' ? { tls: {} } : {}),
    };
    if (kind === 'cluster') {
      if (path && path !== '/') throw new Error('a cluster URL takes no path (a cluster has only database 0)');
      return { kind: 'cluster', nodes: hosts(list, 6379), options: auth };
    }
    const [name, db] = (path ?? '').split('/').filter(Boolean);
    if (!name) throw new Error('a sentinel URL names its master: redis+sentinel://host:26379/<master name>');
    if (db !== undefined && !/^\d+$/.test(db)) throw new Error(`database ${JSON.stringify(db)} is not a number`);
    const sentinelPassword = new URLSearchParams(query ?? '').get('sentinel_password');
    return {
      kind: 'sentinel',
      options: { ...auth, sentinels: hosts(list, 26379), name, ...(db ? { db: Number(db) } : {}), ...(sentinelPassword ? { sentinelPassword } : {}), ...(scheme === 'rediss' ? { enableTLSForSentinelMode: true } : {}) },
    };
  }
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`scheme ${u.protocol} is not redis:, rediss:, redis+sentinel: or redis+cluster:`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    kind: 'standalone',
    options: {
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : 6379,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      ...(Number.isInteger(db) ? { db } : {}),
      ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  };
}

/** REDIS_URL in a config schema: one of the three forms. */
export const envRedisUrl = z.string().superRefine((value, ctx) => {
  try {
    parseRedisUrl(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `must be redis://, rediss://, redis+sentinel:// or redis+cluster:// (${(err as Error).message})` });
  }
});

export const isClusterUrl = (url: string): boolean => parseRedisUrl(url).kind === 'cluster';

/** The prefix of sdq's own keys: hash-tagged in a cluster, so its multi-key scripts stay in one slot. */
export function ownKeyPrefix(prefix: string, redisUrl: string): string {
  return isClusterUrl(redisUrl) ? `{${prefix}}` : prefix;
}

/** A BullMQ queue's name as its keys carry it: hash-tagged in a cluster, so each queue has its own slot. */
export function taggedQueueName(name: string, redisUrl: string): string {
  return isClusterUrl(redisUrl) ? `{${name}}` : name;
}

/**
 * An ioredis client for the URL. A cluster client is typed as a Redis: sdq uses the commands both
 * share (scripts, multi within one slot, pub/sub, duplicate()).
 */
export function createRedis(redisUrl: string, overrides: RedisOptions = {}): Redis {
  const topology = parseRedisUrl(redisUrl);
  if (topology.kind === 'cluster') {
    const { enableOfflineQueue, lazyConnect, enableAutoPipelining, ...node } = overrides;
    return new Cluster(topology.nodes, {
      redisOptions: { ...topology.options, ...node },
      ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
      ...(lazyConnect !== undefined ? { lazyConnect } : {}),
      ...(enableAutoPipelining !== undefined ? { enableAutoPipelining } : {}),
      ...(overrides.retryStrategy ? { clusterRetryStrategy: overrides.retryStrategy } : {}),
    }) as unknown as Redis;
  }
  return new Redis({ ...topology.options, ...overrides });
}

/**
 * What BullMQ's `connection` takes for the URL: options (BullMQ makes and closes the client) on one
 * server or behind Sentinel; a cluster client otherwise, which BullMQ does not close: `release` does.
 */
export function bullmqConnection(redisUrl: string, overrides: RedisOptions = {}): { connection: RedisOptions | Redis; release(): void } {
  const topology = parseRedisUrl(redisUrl);
  if (topology.kind !== 'cluster') return { connection: { ...topology.options, ...overrides }, release: () => {} };
  const client = createRedis(redisUrl, overrides);
  return { connection: client, release: () => client.disconnect() };
}

/**
 * The variables every process reads alike to reach the same Redis keys: one definition, spread into each
 * app's environment schema.
 */
export const QUEUE_ENV = {
  /** redis://, rediss://, redis+sentinel:// or redis+cluster:// (docs/operations.md: Redis topologies). Default redis://127.0.0.1:6379. */
  REDIS_URL: envRedisUrl.default('redis://127.0.0.1:6379'),
  /** Key prefix of every queue and record; the same in every process. Default "sdq". */
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'may hold only letters, digits, _ . -').default(DEFAULT_QUEUE_PREFIX),
};
