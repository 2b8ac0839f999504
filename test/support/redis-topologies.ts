/**
 * Private Redis topologies for the topology tests, from the redis-server binary: a three-master Redis
 * Cluster (slots spread by redis-cli --cluster create) and a master watched by one Sentinel. Each lives in
 * its own temporary folder on free ports and is removed by close().
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './redis';

const run = promisify(execFile);

export interface Topology {
  /** The REDIS_URL that reaches it. */
  url: string;
  /** The servers' own addresses (the cluster's masters, or the sentinel's master). */
  servers: { host: string; port: number }[];
  close(): Promise<void>;
}

async function ping(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {}); // refused until the server listens: the loop tries again
    try {
      await client.connect();
      await client.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis on ${port} did not answer`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      client.disconnect();
    }
  }
}

function serve(args: string[], children: ChildProcess[]): void {
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  children.push(child);
}

async function stopAll(children: ChildProcess[], dir: string): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
}

/** Three masters, no replicas, every slot assigned; resolves once `cluster_state:ok` on each. */
export async function startRedisCluster(): Promise<Topology> {
  const dir = mkdtempSync(join(tmpdir(), 'sdq-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      // a cluster port is the client port + 10000: both must be free
      let port = 0;
      do port = await freePort();
      while (port > 55_000);
      ports.push(port);
      serve(['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--save', '', '--appendonly', 'no'], children);
    }
    await Promise.all(ports.map((p) => ping(p)));
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    for (const port of ports) {
      const client = new Redis({ port, host: '127.0.0.1' });
      try {
        const deadline = Date.now() + 15_000;
        while (!(await client.cluster('INFO')).includes('cluster_state:ok')) {
          if (Date.now() > deadline) throw new Error('the cluster did not become ok');
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        client.disconnect();
      }
    }
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    servers: ports.map((port) => ({ host: '127.0.0.1', port })),
    close: () => stopAll(children, dir),
  };
}

/** A master and one Sentinel watching it as `sdq-master` (quorum 1). */
export async function startRedisSentinel(): Promise<Topology> {
  const dir = mkdtempSync(join(tmpdir(), 'sdq-sentinel-'));
  const children: ChildProcess[] = [];
  const [master, sentinel] = [await freePort(), await freePort()];
  try {
    serve(['--port', String(master), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], children);
    await ping(master);
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, [`port ${sentinel}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor sdq-master 127.0.0.1 ${master} 1`, 'sentinel down-after-milliseconds sdq-master 2000', ''].join('\n'));
    serve([conf, '--sentinel'], children);
    await ping(sentinel);
    const probe = new Redis({ port: sentinel, host: '127.0.0.1' });
    try {
      const deadline = Date.now() + 10_000;
      while (!(await probe.call('SENTINEL', 'get-master-addr-by-name', 'sdq-master'))) {
        if (Date.now() > deadline) throw new Error('the sentinel does not know its master');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      probe.disconnect();
    }
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
  return { url: `redis+sentinel://127.0.0.1:${sentinel}/sdq-master`, servers: [{ host: '127.0.0.1', port: master }], close: () => stopAll(children, dir) };
}
