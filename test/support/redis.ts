/**
 * Redis for tests. Uses REDIS_URL when set; otherwise starts a private `redis-server` on a free port in
 * a temporary folder (never the system Redis on 6379, which may hold someone's data); otherwise, where a
 * Docker engine runs, a redis:7 container through testcontainers. Each test file gets its own key prefix
 * and removes its keys afterwards.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { dockerAvailable, genericContainer } from './containers';

export interface TestRedis {
  url: string;
  /** A key prefix of this test file's own. */
  prefix: string;
  /**
   * Only for a private server: stop it (the port stays reserved for restart()). SIGKILL by default;
   * SIGTERM is Redis's own shutdown (with AOF on, it writes the file out first).
   */
  stop(signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  restart(): Promise<void>;
  /** Removes every key of this file's prefix (also `<prefix>x:...` and Cluster's `{<prefix>...}` forms). */
  removeKeys(): Promise<void>;
  /** Removes this file's keys and stops a private server. */
  close(): Promise<void>;
}

/** The shape of every test prefix: the global teardown looks for keys of it left in a lent Redis. */
export const TEST_PREFIX_PATTERN = 't[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function waitForPing(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      return;
    } catch (err) {
      client.disconnect();
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * @param opts.private start a private server even when REDIS_URL is set (tests that stop Redis).
 */
/** `aof`: a private server with the append-only file on (fsync every second), as docker-compose runs it. */
export async function startTestRedis(opts: { private?: boolean; aof?: boolean } = {}): Promise<TestRedis> {
  const prefix = `t${randomUUID().slice(0, 8)}`;
  const cleanup = async (url: string) => {
    const client = new Redis(url, { maxRetriesPerRequest: 1 });
    try {
      // tests derive more prefixes from theirs (`${prefix}r` for a second deployment) and Cluster
      // hash-tags them (`{${prefix}}:...`): every key that starts with the prefix is this file's
      for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          if (keys.length) await client.unlink(...keys);
          cursor = next;
        } while (cursor !== '0');
      }
    } finally {
      client.disconnect();
    }
  };

  if (process.env.REDIS_URL && !opts.private && !opts.aof) {
    const url = process.env.REDIS_URL;
    await waitForPing(url);
    const unsupported = async () => {
      throw new Error('cannot stop a Redis given by REDIS_URL; use startTestRedis({ private: true })');
    };
    return { url, prefix, stop: unsupported, restart: unsupported, removeKeys: () => cleanup(url), close: () => cleanup(url) };
  }

  if (!hasRedisServer()) {
    if (dockerAvailable()) return startContainerRedis(prefix, cleanup, !!opts.aof);
    throw new Error('tests need Redis: set REDIS_URL, or install redis-server (apt-get install redis-server) so a private one can be started, or run a Docker engine');
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sdq-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const start = async () => {
    const persistence = opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no'];
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence], {
      stdio: 'ignore',
    });
    await waitForPing(url);
  };
  const stop = async (signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL') => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  };
  await start();
  return {
    url,
    prefix,
    stop,
    restart: start,
    removeKeys: () => cleanup(url),
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** redis:7 in a container on a fixed host port, so that stop() and restart() keep the same URL. */
async function startContainerRedis(prefix: string, cleanup: (url: string) => Promise<void>, aof: boolean): Promise<TestRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  type Started = Awaited<ReturnType<Awaited<ReturnType<typeof genericContainer>>['container']['start']>>;
  let running: Started | undefined;
  const start = async () => {
    const { container, Wait } = await genericContainer('redis:7');
    running = await container
      .withExposedPorts({ container: 6379, host: port })
      .withCommand(['redis-server', '--save', '', ...(aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no'])])
      .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
      .start();
    await waitForPing(url);
  };
  const stop = async () => {
    const c = running;
    running = undefined;
    await c?.stop({ timeout: 1 });
  };
  await start();
  return {
    url,
    prefix,
    stop,
    restart: start,
    removeKeys: () => cleanup(url),
    close: async () => {
      await cleanup(url).catch(() => {});
      await stop();
    },
  };
}
