/**
 * `npm run bench:service`: what the service adds on top of the pipeline, on this machine.
 *
 * 1. Latency: a 25-step 128x128 tiny-sd text-to-image, bare pipeline (in this process) against the same
 *    request through the API + queue + worker + storage (synchronous Stability call, Accept: image/png),
 *    with the API and the worker as separate processes as `npm start` runs them. RUNS of each,
 *    alternating; the added latency is the median of the paired differences.
 * 2. Throughput: accepted submissions per second with `Prefer: respond-async` (no worker running, so
 *    only the API and Redis are measured), CONCURRENCY requests in flight, bounded by count and time.
 *
 * Everything on loopback: a private redis-server on a free port, local storage in a temporary folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { StableDiffusionPipeline } from '@sdq/pipeline';
import { freePort, startTestRedis } from '../test/support/redis';

const ROOT = resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const WARMUP = 3;
const THROUGHPUT_MAX_REQUESTS = Number(process.env.BENCH_SUBMISSIONS ?? 5000);
const THROUGHPUT_MAX_MS = 10_000;
const CONCURRENCY = 64;
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
/** onnxruntime intra-op threads, the same for the bare pipeline and the worker (ORT_THREADS). */
const THREADS = process.env.ORT_THREADS ? Number(process.env.ORT_THREADS) : undefined;
const BODY = JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 25, seed: 42, width: 128, height: 128 });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))];
const ms = (x: number) => `${x.toFixed(1)} ms`;

function spawnApp(entry: string, env: Record<string, string>, readyLine: string, onLine: (line: string) => void = () => {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry)], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res, rej) => {
    // Start-up output is kept for the error message; after that only whole lines are looked at, so
    // reading thousands of log lines costs the benchmark (which shares the cores) next to nothing.
    let out = '';
    let ready = false;
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString();
      if (!ready) {
        out += text;
        if (out.includes(readyLine)) {
          ready = true;
          out = '';
          res(child);
        }
      }
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      lines.forEach(onLine);
    });
    child.once('exit', (code) => rej(new Error(`${entry} exited (${code}):\n${out}`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null) return res();
    child.once('exit', () => res());
    child.kill('SIGTERM');
  });
}

/** The bare pipeline, loaded in this process: one timed generation per call. */
async function barePipeline(): Promise<{ run(): Promise<number>; dispose(): Promise<void> }> {
  const pipeline = await StableDiffusionPipeline.load(join(ROOT, 'models/tiny-sd'), { threads: THREADS });
  return {
    run: async () => {
      const t = performance.now();
      await pipeline.generate({ prompts: [{ text: 'a red circle on a blue background' }], steps: 25, seed: 42, width: 128, height: 128, outputFormat: 'png' });
      return performance.now() - t;
    },
    dispose: () => pipeline.dispose(),
  };
}

async function main(): Promise<void> {
  console.log(`bench:service on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; ${RUNS} runs after ${WARMUP} warm-up; ORT_THREADS ${THREADS ?? 'default'}`);
  const bare = await barePipeline();

  const redis = await startTestRedis({ private: true });
  const artifacts = mkdtempSync(join(tmpdir(), 'sdq-bench-artifacts-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR: join(ROOT, 'models'), ARTIFACTS_DIR: artifacts, LOG_LEVEL: 'warn', ...(THREADS ? { ORT_THREADS: String(THREADS) } : {}) };
  const children: ChildProcess[] = [];
  try {
    // The per-key rate limit (150 per 10 s) and the active-job limit would cap the submission rate
    // measured below: the bench lifts both; the hold, ledger and idempotency work per request remain.
    // REQUIRE_WORKER=false: the submission part runs with its worker stopped, and still queues.
    const limits = { RATE_LIMIT: '1000000', MAX_ACTIVE_JOBS: '0', REQUIRE_WORKER: 'false' };
    const api = await spawnApp('apps/api/src/main.ts', { ...env, ...limits, PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, ADMIN_TOKEN, LOG_LEVEL: 'info' }, 'sdq api listening');
    children.push(api);
    // The worker's own time per job (pipeline + upload), from its log, splits the added latency into
    // transport (HTTP, queue, events, storage reads) and a slower pipeline beside the other processes.
    const jobMs: number[] = [];
    const worker = await spawnApp('apps/worker/src/main.ts', { ...env, HEALTH_PORT: '0', HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'info' }, 'worker ready', (line) => {
      if (line.includes('"job succeeded"')) jobMs.push((JSON.parse(line) as { ms: number }).ms);
    });
    children.push(worker);
    const account = await fetch(`${url}/v1/admin/accounts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', credits: 1_000_000 }),
    });
    const { api_key: key } = (await account.json()) as { api_key: string };
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

    // 1. latency through the service
    const call = async () => {
      const t = performance.now();
      const res = await fetch(`${url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: { ...headers, accept: 'image/png' }, body: BODY });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`service answered ${res.status}`);
      return performance.now() - t;
    };
    // Bare and service runs alternate, so that whatever else loads the machine weighs on both alike.
    for (let i = 0; i < WARMUP; i++) {
      await bare.run();
      await call();
    }
    const bareTimes: number[] = [];
    const serviceTimes: number[] = [];
    jobMs.length = 0;
    for (let i = 0; i < RUNS; i++) {
      bareTimes.push(await bare.run());
      serviceTimes.push(await call());
    }
    await bare.dispose();
    const transport = serviceTimes.map((t, i) => t - jobMs[i]);
    const paired = serviceTimes.map((t, i) => t - bareTimes[i]);

    // 2. accepted submissions per second, with no worker taking CPU
    await stop(worker);
    let sent = 0;
    let accepted = 0;
    let other = 0;
    const started = performance.now();
    const deadline = started + THROUGHPUT_MAX_MS;
    const submitter = async () => {
      while (sent < THROUGHPUT_MAX_REQUESTS && performance.now() < deadline) {
        sent++;
        const res = await fetch(`${url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: { ...headers, prefer: 'respond-async' }, body: BODY });
        await res.arrayBuffer();
        if (res.status === 202) accepted++;
        else other++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, submitter));
    const seconds = (performance.now() - started) / 1000;

    const bareMedian = median(bareTimes);
    const serviceMedian = median(serviceTimes);
    // The median of the paired differences: each service run against the bare run just before it.
    const added = median(paired);
    console.log('');
    console.log('| measure | value |');
    console.log('|---|---|');
    console.log(`| bare pipeline, median (p90) | ${ms(bareMedian)} (${ms(p90(bareTimes))}) |`);
    console.log(`| through API + queue + worker + storage, median (p90) | ${ms(serviceMedian)} (${ms(p90(serviceTimes))}) |`);
    console.log(`| added latency, median of paired differences | ${ms(added)} (${((added / bareMedian) * 100).toFixed(1)} % of the bare median) |`);
    console.log(`| of which outside the worker's job (HTTP, queue, events, storage), median | ${ms(median(transport))} |`);
    console.log(`| worker's job time (pipeline + upload), median | ${ms(median(jobMs))} |`);
    console.log(`| accepted submissions (Prefer: respond-async) | ${(accepted / seconds).toFixed(0)} /s (${accepted} in ${seconds.toFixed(2)} s, ${CONCURRENCY} in flight${other ? `, ${other} not accepted` : ''}) |`);
  } finally {
    await Promise.all(children.map(stop));
    await redis.close();
    rmSync(artifacts, { recursive: true, force: true });
  }
}

await main();
