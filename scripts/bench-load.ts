/**
 * `npm run bench:load`: sdq's submission path under load, against the thinnest express + BullMQ service.
 *
 * 1. sdq: the API as a child process (as `npm start` runs it, logging at info), 50 accounts. A second
 *    process (this file with --client) sends SUBMISSIONS asynchronous Stability text-to-image requests,
 *    CONCURRENCY in flight, round-robin over the accounts' keys; it prints accepted submissions per second
 *    and the p50 / p99 submit latency. Then a worker completes every job (the queue-protocol stub worker
 *    of the tests: the API's path is what is measured, not the pipeline), and the ledger must verify with
 *    every job charged once and no hold left open.
 * 2. baseline: a child process that parses JSON, calls queue.add and answers 202, nothing else, driven by
 *    the same client with the same load. Both run throughout; their rounds alternate (4 of each).
 * Prints sdq's accepted submissions per second as a share of the baseline's (goal: at least 0.8).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queueNameForEngine, redisOptionsFromUrl } from '@sdq/contracts';
import { CreditsService } from '@sdq/credits';
import { createStorage } from '@sdq/storage';
import { freePort, startTestRedis } from '../test/support/redis';

const ROOT = resolve(import.meta.dirname, '..');
const SUBMISSIONS = Number(process.env.BENCH_SUBMISSIONS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const WARMUP = 200;
/** The submissions go in rounds, alternating with the baseline's, so a slow spell of the machine weighs on both. */
const ROUNDS = 4;
/** BENCH_PROFILE_DIR: the API writes a V8 CPU profile there (node --cpu-prof), to see where its time goes. */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const ACCOUNTS = 50;
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
const BODY = JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 42 });
const PATH = '/v1/generation/tiny-sd/text-to-image';

interface ClientArgs {
  url: string;
  keys: string[];
  n: number;
  concurrency: number;
}
interface ClientReport {
  accepted: number;
  statuses: Record<string, number>;
  seconds: number;
  p50: number;
  p99: number;
}

/** The load generator (its own process, so it does not share the API's event loop). */
async function client(args: ClientArgs): Promise<ClientReport> {
  let sent = 0;
  let accepted = 0;
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  const started = performance.now();
  const one = async () => {
    while (sent < args.n) {
      const key = args.keys[sent++ % args.keys.length];
      const t = performance.now();
      const res = await fetch(args.url + PATH, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' }, body: BODY });
      await res.arrayBuffer();
      latencies.push(performance.now() - t);
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (res.status === 202) accepted++;
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, one));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))];
  return { accepted, statuses, seconds, p50: at(0.5), p99: at(0.99) };
}

/** The baseline service: JSON in, queue.add, 202 out. */
async function baseline(port: number, redisUrl: string, prefix: string): Promise<void> {
  const express = (await import('express')).default;
  const queue = new Queue('baseline', { prefix, connection: { ...redisOptionsFromUrl(redisUrl), enableOfflineQueue: false, maxRetriesPerRequest: 1 } });
  const app = express();
  app.use(express.json());
  app.post(PATH, (req, res, next) => {
    queue.add('text-to-image', req.body).then((job) => res.status(202).json({ id: job.id }), next);
  });
  app.listen(port, '127.0.0.1', () => console.log('baseline listening'));
}

function spawnSelf(args: string[], env: Record<string, string>, readyLine?: string, nodeFlags: string[] = []): { child: ChildProcess; ready: Promise<void>; output: Promise<string> } {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', ...args], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let resolveReady!: () => void;
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    child.once('exit', (code) => rej(new Error(`${args[0]} exited (${code}):\n${out.slice(-2000)}`)));
  });
  ready.catch(() => {}); // a client has no ready line: its exit is its end
  child.stdout!.on('data', (d: Buffer) => {
    // After start-up, only what a client prints is kept; the API's request log is read and dropped.
    if (readyLine && out.includes(readyLine)) return;
    out += d.toString();
    if (readyLine && out.includes(readyLine)) resolveReady();
  });
  const output = new Promise<string>((res) => child.once('exit', () => res(out)));
  return { child, ready, output };
}

async function drive(url: string, keys: string[], n: number): Promise<ClientReport> {
  // the keys travel in the environment, not on a command line that `ps` shows
  const run = spawnSelf([join(ROOT, 'scripts/bench-load.ts'), '--client'], { SDQ_BENCH_CLIENT: JSON.stringify({ url, keys, n, concurrency: CONCURRENCY }) });
  return JSON.parse((await run.output).trim().split('\n').pop()!) as ClientReport;
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null) return res();
    child.once('exit', () => res());
    child.kill('SIGTERM');
  });
}

/** Rounds' reports as one: their counts and times summed; latencies are the rounds' medians of p50 and p99. */
function merge(rounds: ClientReport[]): ClientReport {
  const statuses: Record<string, number> = {};
  for (const r of rounds) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    accepted: rounds.reduce((n, r) => n + r.accepted, 0),
    statuses,
    seconds: rounds.reduce((n, r) => n + r.seconds, 0),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const fmt = (r: ClientReport) => `${(r.accepted / r.seconds).toFixed(0)}/s accepted (${r.accepted} of ${Object.values(r.statuses).reduce((a, b) => a + b, 0)} in ${r.seconds.toFixed(2)} s); p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`;

async function main(): Promise<void> {
  console.log(`bench:load on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; ${SUBMISSIONS} submissions, ${CONCURRENCY} in flight, ${ACCOUNTS} accounts`);
  const redis = await startTestRedis({ private: true });
  const artifacts = mkdtempSync(join(tmpdir(), 'sdq-bench-artifacts-'));
  const children: ChildProcess[] = [];
  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR: join(ROOT, 'models'), ARTIFACTS_DIR: artifacts, ARTIFACT_URL_SECRET: 'bench-artifact-secret-0123456789' };
    // the active-job limit would cap a queue with no worker running: lifted; the rate limit (150 per key
    // per 10 s) stays, and 50 keys stay under it. REQUIRE_WORKER=false: queued while no worker runs.
    const api = spawnSelf([join(ROOT, 'apps/api/src/main.ts')], { ...env, MAX_ACTIVE_JOBS: '0', REQUIRE_WORKER: 'false', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, ADMIN_TOKEN, LOG_FORMAT: 'json' }, 'sdq api listening', PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []);
    children.push(api.child);
    await api.ready;
    const keys: string[] = [];
    for (let i = 0; i < ACCOUNTS; i++) {
      const res = await fetch(`${url}/v1/admin/accounts`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: `load-${i}`, credits: 10_000 }) });
      keys.push(((await res.json()) as { api_key: string }).api_key);
    }

    // the baseline, same Redis (its own prefix), same client; both run throughout, and their rounds alternate
    const basePort = await freePort();
    const baseUrl = `http://127.0.0.1:${basePort}`;
    const base = spawnSelf([join(ROOT, 'scripts/bench-load.ts'), '--baseline', String(basePort), redis.url, `${redis.prefix}b`], {}, 'baseline listening');
    children.push(base.child);
    await base.ready;
    await drive(url, keys, WARMUP);
    await drive(baseUrl, keys, WARMUP);
    const sdqRounds: ClientReport[] = [];
    const bareRounds: ClientReport[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      sdqRounds.push(await drive(url, keys, SUBMISSIONS / ROUNDS));
      bareRounds.push(await drive(baseUrl, keys, SUBMISSIONS / ROUNDS));
    }
    const sdq = merge(sdqRounds);
    const bare = merge(bareRounds);
    const paired = median(sdqRounds.map((r, i) => r.accepted / r.seconds / (bareRounds[i].accepted / bareRounds[i].seconds)));

    // every job completes, each charged once, the books balance
    const { startStubWorker } = await import('../apps/api/test/support/stub-worker');
    const storage = createStorage({ local: { dir: artifacts, secret: 'bench-artifact-secret-0123456789', publicUrl: url } });
    const worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'tiny-sd', storage });
    const queue = new Queue(queueNameForEngine('tiny-sd'), { prefix: redis.prefix, connection: redisOptionsFromUrl(redis.url) });
    const total = WARMUP + sdq.accepted;
    const completeStarted = performance.now();
    for (;;) {
      const counts = await queue.getJobCounts('completed', 'failed');
      if (counts.completed + counts.failed >= total) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const counts = await queue.getJobCounts('completed', 'failed');
    const completeSeconds = (performance.now() - completeStarted) / 1000;
    await worker.close();
    await queue.close();
    const ledgerRedis = new Redis(redis.url);
    const credits = new CreditsService(ledgerRedis, { prefix: redis.prefix });
    let report = await credits.verify();
    for (let i = 0; i < 40 && report.open_holds.length; i++) {
      await new Promise((r) => setTimeout(r, 250));
      report = await credits.verify();
    }
    ledgerRedis.disconnect();
    await stop(api.child);

    const share = sdq.accepted / sdq.seconds / (bare.accepted / bare.seconds);
    console.log('');
    console.log('| measure | value |');
    console.log('|---|---|');
    console.log(`| sdq, async submissions | ${fmt(sdq)} |`);
    console.log(`| sdq, jobs completed after (stub worker) | ${counts.completed} completed, ${counts.failed} failed, in ${completeSeconds.toFixed(1)} s |`);
    console.log(`| sdq, ledger | ${report.ok ? 'verifies' : `DOES NOT VERIFY: ${JSON.stringify(report.problems.slice(0, 3))}`}: ${report.accounts} accounts, ${report.entries} entries, ${report.open_holds.length} holds open |`);
    console.log(`| bare express + BullMQ (JSON, queue.add, 202) | ${fmt(bare)} |`);
    console.log(`| sdq's accepted submissions per second as a share of the bare service's | ${share.toFixed(2)} over all rounds, ${paired.toFixed(2)} as the median of paired rounds (goal 0.8) |`);
    if (!report.ok || report.open_holds.length || counts.failed || counts.completed !== total) process.exitCode = 1;
  } finally {
    await Promise.all(children.map(stop));
    await redis.close();
    rmSync(artifacts, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--client') {
  console.log(JSON.stringify(await client(JSON.parse(process.env.SDQ_BENCH_CLIENT!) as ClientArgs)));
} else if (process.argv[2] === '--baseline') {
  await baseline(Number(process.argv[3]), process.argv[4], process.argv[5]);
} else {
  await main();
}
