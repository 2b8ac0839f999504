/**
 * `npm start`: the whole service on one machine, on embedded defaults: the processes in PROCESSES as
 * child processes, with Redis from REDIS_URL, or a private redis-server when nothing answers there.
 *
 *   npm start                  every process
 *   npm start -- worker        only the named ones (with the same Redis bootstrapping)
 *
 * A supervisor: a child that exits unexpectedly is restarted after a backoff (1 s, doubling to 30 s),
 * and the restart is logged with its exit code or signal; the launcher stops everything only on its own
 * SIGINT / SIGTERM, or when a child crashes 5 times within a minute. Children never outlive it: each
 * has an IPC channel that closes when the launcher goes, however it went (SIGKILL included), and stops
 * itself then (redis-server through scripts/guard.mjs). Health ports follow PORT (PORT+1 for the worker,
 * PORT+2 for webhook delivery), so several launchers with different PORTs run side by side; a port in use
 * is one line naming the variable to set. `npm run start:api` / `start:worker` / `start:webhooks` run one
 * process without this launcher, for machines that join an existing Redis.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { portInUseMessage } from '../packages/contracts/src/lifecycle';

const ROOT = resolve(import.meta.dirname, '..');
const DATA_DIR = join(ROOT, '.data');

/** The service's processes: name -> entry point. */
const PROCESSES: Record<string, string> = {
  api: 'apps/api/src/main.ts',
  worker: 'apps/worker/src/main.ts',
  webhooks: 'apps/webhooks/src/main.ts',
};

/**
 * How a process starts: compiled (dist/<name>.js, built by `npm start` just before) when this launcher
 * runs compiled itself, else its TypeScript through tsx (`tsx scripts/start.ts`, as the tests run it).
 */
const COMPILED = /[\\/]dist[\\/]start\.js$/.test(process.argv[1] ?? '');
const argsOf = (name: string): string[] => (COMPILED ? [join(ROOT, 'dist', `${name}.js`)] : ['--import', 'tsx', PROCESSES[name]]);

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

function say(message: string): void {
  process.stderr.write(`sdq: ${message}\n`);
}

/** True when something speaking Redis answers at the URL (an auth error counts: it is a Redis). */
function redisAnswers(url: string, timeoutMs = 1000): Promise<boolean> {
  const u = new URL(url);
  return new Promise((done) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || 6379) });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => finish(/^(\+PONG|-NOAUTH|-ERR)/.test(data.toString())));
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Redis at REDIS_URL, or a private redis-server started here; exits with advice when neither works. */
async function ensureRedis(): Promise<{ url: string; child?: ChildProcess }> {
  const url = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  // Sentinel and Cluster deployments are the operator's own: used as given, never replaced by a private server
  if (/^rediss?\+(sentinel|cluster):/.test(url)) return { url };
  if (await redisAnswers(url)) return { url };
  const u = new URL(url);
  const hasServer = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!LOOPBACK.has(u.hostname) || !hasServer) {
    say(`no Redis answers at ${u.host}.`);
    if (!LOOPBACK.has(u.hostname)) say('REDIS_URL names another machine: start Redis there, or point REDIS_URL at one that runs.');
    else say('Install Redis (apt-get install redis-server, brew install redis) so `npm start` can run a private one, run one yourself (docker run -p 6379:6379 redis:7), or set REDIS_URL.');
    process.exit(1);
  }
  const wanted = Number(u.port || 6379);
  const port = (await portIsFree(wanted)) ? wanted : await freePort();
  const dir = join(DATA_DIR, 'redis');
  mkdirSync(dir, { recursive: true });
  // AOF on, so queued jobs survive a restart; noeviction, because an evicted job key is a lost job.
  // Through the guard, which stops it when this launcher goes, however it went.
  const child = spawn(
    process.execPath,
    [join(ROOT, 'scripts/guard.mjs'), 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction', '--save', ''],
    { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], detached: true },
  );
  u.port = String(port);
  u.hostname = '127.0.0.1';
  const privateUrl = u.toString().replace(/\/$/, '');
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(privateUrl, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      say(`the private redis-server did not start (see its messages above)`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  say(`no Redis answered at ${url}: started a private redis-server at ${privateUrl} (data in .data/redis, AOF on); it stops with sdq`);
  return { url: privateUrl, child };
}

/**
 * A local artifact URL secret that survives restarts, so links handed out stay valid; every child gets
 * the same one, so URLs signed by the delivery process verify at the API.
 */
function artifactSecret(): string {
  const file = join(DATA_DIR, 'artifact-url-secret');
  if (!existsSync(file)) {
    mkdirSync(DATA_DIR, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  return readFileSync(file, 'utf8').trim();
}

/** Restart backoff: SDQ_RESTART_DELAY_MS (default 1000) doubling per crash in a row, at most 30 s. */
const RESTART_BASE_MS = Number(process.env.SDQ_RESTART_DELAY_MS ?? 1000);
const RESTART_MAX_MS = 30_000;
/** This many unexpected exits of one process within CRASH_WINDOW_MS stop the service. */
const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 60_000;

/** The ports this launcher's processes will bind: PORT, and health ports that follow it unless set. */
function portsFor(selected: string[]): { env: Record<string, string>; checks: [string, number][] } {
  const port = Number(process.env.PORT || 3000);
  const env: Record<string, string> = { PORT: String(port) };
  const checks: [string, number][] = [];
  if (selected.includes('api')) checks.push(['PORT', port]);
  for (const [name, variable, offset] of [['worker', 'HEALTH_PORT', 1], ['webhooks', 'WEBHOOK_HEALTH_PORT', 2]] as const) {
    const value = process.env[variable] ? Number(process.env[variable]) : port + offset;
    env[variable] = String(value);
    if (selected.includes(name) && value !== 0) checks.push([variable, value]);
  }
  return { env, checks };
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill(signal);
  });
}

/**
 * `ready:` once a generation sent now would succeed: the API answers /readyz and, when this launcher
 * started a worker, the worker answers its /readyz (WORKER_PRELOAD loaded: the default engine, taking jobs). Until then one line
 * says what it waits for. Printed once, with the URL to open and the next step.
 */
async function announceReady(port: number, worker: { port?: number } | undefined, stopped: () => boolean): Promise<void> {
  const url = `http://localhost:${port}`;
  const answers = (p: number) => fetch(`http://127.0.0.1:${p}/readyz`).then((r) => r.ok, () => false);
  let waitingSaid = false;
  for (let i = 0; i < 3600 && !stopped(); i++) {
    if (await answers(port)) {
      if (worker?.port === undefined || (await answers(worker.port))) {
        say(`ready: ${url} (the studio at ${url}/, API docs at ${url}/openapi.json)`);
        if (!worker) say('no worker was started here: generations wait for a worker of this deployment (`npm start -- worker`, or `npm run start:worker` elsewhere)');
        say('next: `npx sdq accounts create --name me --credits 10` prints an API key; paste it in the studio, or see the README\'s Quick start for a first image with curl');
        return;
      }
      if (!waitingSaid) say(`the API answers at ${url}; waiting for the worker to load ${process.env.WORKER_PRELOAD ? `WORKER_PRELOAD (${process.env.WORKER_PRELOAD})` : `the default engine (${process.env.DEFAULT_ENGINE || 'the first generation engine under MODELS_DIR'})`} before saying ready; other engines load when a request asks for one`);
      waitingSaid = true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !(n in PROCESSES));
  if (unknown.length) {
    say(`unknown process ${unknown.join(', ')}; choose from ${Object.keys(PROCESSES).join(', ')}`);
    process.exit(2);
  }
  const selected = names.length ? names : Object.keys(PROCESSES);
  const ports = portsFor(selected);
  // Every clash is one line naming the variable, before anything starts.
  for (const [variable, port] of ports.checks) {
    if (!(await portIsFree(port))) {
      say(portInUseMessage(variable, port));
      process.exit(2);
    }
  }
  const redis = await ensureRedis();
  const env = {
    // the worker's onnxruntime runs without its arena: huge pages keep malloc'd tensors fast; a worker that
    // unloads engines (a memory bound) needs malloc to hand big blocks back, a fixed mmap threshold (BENCHMARKS.md)
    GLIBC_TUNABLES: process.env.WORKER_MODEL_MEMORY_MB || process.env.WORKER_MAX_LOADED_ENGINES ? 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=131072' : 'glibc.malloc.hugetlb=1',
    ...process.env,
    ...ports.env,
    REDIS_URL: redis.url,
    ARTIFACT_URL_SECRET: process.env.ARTIFACT_URL_SECRET || artifactSecret(),
  };

  const children = new Map<string, ChildProcess>();
  const crashes = new Map<string, number[]>();
  let stopping: Promise<void> | undefined;
  let exitCode = 0;
  const stopAll = (signal: NodeJS.Signals) =>
    (stopping ??= (async () => {
      await Promise.all([...children.values()].map((c) => stopChild(c, signal)));
      if (redis.child) await stopChild(redis.child, 'SIGTERM');
      process.exit(exitCode);
    })());

  const start = (name: string) => {
    // Own process group (detached): a terminal's Ctrl-C reaches the launcher only, which stops the
    // processes in order instead of everything at once. The IPC channel is how each one knows the
    // launcher is gone (stopWithLauncher in @sdq/contracts).
    const child = spawn(process.execPath, argsOf(name), { cwd: ROOT, env, stdio: ['inherit', 'inherit', 'inherit', 'ipc'], detached: true });
    children.set(name, child);
    child.on('exit', (code, signal) => {
      if (stopping) return;
      const now = Date.now();
      const recent = [...(crashes.get(name) ?? []), now].filter((at) => now - at < CRASH_WINDOW_MS);
      crashes.set(name, recent);
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      if (recent.length >= CRASH_LIMIT) {
        say(`${name} crashed ${recent.length} times within a minute (last: ${how}); stopping sdq. Its messages above say why.`);
        exitCode = 1;
        void stopAll('SIGTERM');
        return;
      }
      const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (recent.length - 1));
      say(`${name} exited unexpectedly (${how}); restarting it in ${(delay / 1000).toFixed(1)} s`);
      setTimeout(() => {
        if (stopping) return;
        start(name);
        say(`restarted ${name} (pid ${children.get(name)!.pid})`);
      }, delay);
    });
  };
  for (const name of selected) start(name);
  say(`started ${selected.map((n) => `${n} (pid ${children.get(n)!.pid})`).join(', ')}`);
  // the worker's health port, when this launcher runs one (HEALTH_PORT=0 picks a port it cannot know: not waited for)
  const worker = selected.includes('worker') ? { port: ports.env.HEALTH_PORT !== '0' ? Number(ports.env.HEALTH_PORT) : undefined } : undefined;
  if (selected.includes('api')) void announceReady(Number(ports.env.PORT), worker, () => stopping !== undefined);

  let firstSignalAt = 0;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      // A second signal means "now": the processes are killed without their grace period. One within a
      // second of the first is the same Ctrl-C relayed by npm and tsx, not a second request.
      if (firstSignalAt && Date.now() - firstSignalAt < 1000) return;
      if (firstSignalAt) {
        say('stopping now');
        for (const child of children.values()) child.kill('SIGKILL');
        return;
      }
      firstSignalAt = Date.now();
      say(`${signal}: stopping (again to force)`);
      void stopAll('SIGTERM');
    });
  }
}

await main();
