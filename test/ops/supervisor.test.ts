/**
 * `npm start` as a supervisor, run as an operator runs it (scripts/start.ts, real processes, real Redis):
 * a child killed for memory is restarted while the API keeps answering; a launcher killed with SIGKILL
 * leaves no process behind and a new one comes up on the same ports; a crash loop stops the service with
 * one clear line; a port in use is one line naming the variable; two launchers with different PORTs run
 * side by side.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../e2e/support';
import { freePort, startTestRedis, type TestRedis } from '../support/redis';

let redis: TestRedis;
const launched: Launcher[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});
afterEach(async () => {
  await Promise.all(launched.splice(0).map((l) => l.stop()));
});
afterAll(async () => {
  await redis?.close();
});

interface Launcher {
  child: ChildProcess;
  port: number;
  /** Everything the launcher wrote on stderr so far. */
  log(): string;
  pids(): Record<string, number>;
  stop(): Promise<void>;
}

/** Running: not gone and not a zombie (an orphan that exited waits, unreaped, for whatever PID 1 does). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** A port whose next two are free too: a launcher takes PORT, PORT+1 (worker) and PORT+2 (delivery). */
async function freePortRun(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if ((await portFree(port + 1)) && (await portFree(port + 2))) return port;
  }
}

async function launch(env: Record<string, string>, args: string[] = []): Promise<Launcher> {
  const port = env.PORT ? Number(env.PORT) : await freePortRun();
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', ...args], {
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      QUEUE_PREFIX: `${redis.prefix}${port}`,
      ENGINES: 'tiny-sd',
      LOG_LEVEL: 'warn',
      SDQ_RESTART_DELAY_MS: '300',
      ...env,
      PORT: String(port),
    },
    // the processes' own logs too (warn and above): a failure then shows why a process exited
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stderr!.on('data', (chunk) => (text += String(chunk)));
  child.stdout!.on('data', (chunk) => (text += String(chunk)));
  const launcher: Launcher = {
    child,
    port,
    log: () => text,
    pids: () => {
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/(api|worker|webhooks) \(pid (\d+)\)/g)) out[m[1]] = Number(m[2]);
      return out;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      // whatever it started, in case a test left one behind
      for (const pid of Object.values(launcher.pids())) if (alive(pid)) process.kill(pid, 'SIGKILL');
    },
  };
  launched.push(launcher);
  return launcher;
}

const healthy = (port: number) => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
const ready = (l: Launcher) => waitFor(async () => l.log().includes('sdq: ready: ') || (l.child.exitCode !== null ? Promise.reject(new Error(l.log())) : false), 'the service to be ready', 60_000);

describe('npm start supervises its processes', () => {
  it('restarts a worker killed with SIGKILL after a backoff, logging the signal, while the API answers throughout', async () => {
    const l = await launch({});
    await ready(l);
    // once ready: the URL to open (the studio) and the next step, once
    expect(l.log()).toContain(`sdq: ready: http://localhost:${l.port} (the studio at http://localhost:${l.port}/,`);
    expect(l.log().match(/sdq: next: `npx sdq accounts create --name me --credits 10` prints an API key/g)).toHaveLength(1);
    const before = l.pids().worker;
    let answered = 0;
    let failed = 0;
    const probe = setInterval(() => void healthy(l.port).then((ok) => (ok ? answered++ : failed++)), 50);
    try {
      process.kill(before, 'SIGKILL');
      await waitFor(async () => /restarted worker \(pid (\d+)\)/.test(l.log()), 'the worker to be restarted', 30_000);
    } finally {
      clearInterval(probe);
    }
    expect(l.log()).toContain('worker exited unexpectedly (signal SIGKILL); restarting it in 0.3 s');
    const after = Number(/restarted worker \(pid (\d+)\)/.exec(l.log())![1]);
    expect(after).not.toBe(before);
    expect(alive(after)).toBe(true);
    expect(failed, `${failed} failed of ${answered + failed} health probes`).toBe(0);
    expect(answered).toBeGreaterThan(3);
    expect(alive(l.pids().api)).toBe(true);
  });

  it('leaves no process behind when the launcher is killed with SIGKILL (its private Redis included); a new one comes up on the same ports', async () => {
    // Nothing answers at this Redis address, so the launcher starts its own redis-server there.
    const redisPort = await freePort();
    const l = await launch({ REDIS_URL: `redis://127.0.0.1:${redisPort}` });
    await ready(l);
    expect(l.log()).toContain(`started a private redis-server at redis://127.0.0.1:${redisPort}`);
    const pids = l.pids();
    expect(Object.keys(pids).sort()).toEqual(['api', 'webhooks', 'worker']);
    l.child.kill('SIGKILL');
    await waitFor(async () => Object.values(pids).every((pid) => !alive(pid)), 'every child to stop', 30_000).catch((err) => {
      const stat = (pid: number) => { try { return readFileSync(`/proc/${pid}/stat`, 'utf8').slice(0, 40); } catch { return 'gone'; } };
      throw new Error(`${err.message}: ${Object.entries(pids).map(([n, p]) => `${n} ${stat(p)}`).join('; ')}\n${l.log()}`);
    });
    await waitFor(async () => !(await healthy(l.port)), 'the API port to close', 10_000);
    // the private redis-server is gone too: its port is free again
    await waitFor(async () => portFree(redisPort), 'the private redis-server to stop', 10_000);
    // the same API and Redis ports; the health ports fresh: once freed, PORT+1 and PORT+2 may be handed
    // to any other socket of a busy machine before the new launcher binds them
    const again = await launch({ REDIS_URL: `redis://127.0.0.1:${redisPort}`, PORT: String(l.port), HEALTH_PORT: String(await freePort()), WEBHOOK_HEALTH_PORT: String(await freePort()) });
    await ready(again);
    expect(await healthy(l.port)).toBe(true);
  });

  it('stops the service with one clear line when a process crashes 5 times within a minute', async () => {
    // An invalid setting makes the worker exit at start, every time.
    const l = await launch({ SHUTDOWN_GRACE_MS: '-5' }, ['worker']);
    await waitFor(async () => l.child.exitCode !== null, 'the launcher to give up', 40_000);
    expect(l.child.exitCode).toBe(1);
    expect(l.log()).toMatch(/worker crashed 5 times within a minute \(last: exit code 1\); stopping sdq/);
    expect(l.log().match(/restarting it in/g)).toHaveLength(4);
  });

  it('refuses a port in use with one line naming the variable to set', async () => {
    const port = await freePortRun();
    const held = await hold(port + 1);
    try {
      const l = await launch({ PORT: String(port) });
      await waitFor(async () => l.child.exitCode !== null, 'the launcher to refuse', 20_000);
      expect(l.child.exitCode).toBe(2);
      expect(l.log().trim()).toBe(`sdq: HEALTH_PORT ${port + 1} is in use (another sdq, or another program): set HEALTH_PORT to a free port, or 0 for any`);
    } finally {
      held.close();
    }
  });

  it('runs two launchers side by side with different PORTs, health ports following each', async () => {
    const [a, b] = [await launch({}), await launch({})];
    await Promise.all([ready(a), ready(b)]);
    for (const l of [a, b]) {
      expect(await healthy(l.port)).toBe(true);
      // the worker's health port is PORT + 1, the delivery process's PORT + 2
      expect((await fetch(`http://127.0.0.1:${l.port + 1}/healthz`)).ok).toBe(true);
      expect((await fetch(`http://127.0.0.1:${l.port + 2}/healthz`)).ok).toBe(true);
    }
  });
});

function hold(port: number): Promise<Server> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => done(server));
  });
}

function portFree(port: number): Promise<boolean> {
  return hold(port).then(
    (s) => new Promise<boolean>((done) => s.close(() => done(true))),
    () => false,
  );
}
