/**
 * `npm run bench:batching`: images per second for 4 concurrent compatible text-to-image requests
 * (tiny-sd, 128x128, 30 steps, four prompts and seeds) through the service with a batching worker
 * (WORKER_BATCH_SIZE=4) and with one that runs jobs one at a time, against the bare pipeline denoising
 * the same four requests as one batch of 4 in this process. Goal: the batching service reaches at least
 * 90% of the bare batch-4 rate.
 *
 * API and worker are child processes, as `npm start` runs them; a private redis-server, local storage.
 * Bare and service rounds alternate, so whatever else loads the machine weighs on both alike; besides
 * the totals' ratio it prints the median of each service round's rate over the bare round before it,
 * which a slow spell of the shared machine moves less.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadPipeline } from '@sdq/pipeline';
import { freePort, startTestRedis } from '../test/support/redis';

const ROOT = resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const STEPS = 30;
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
const THREADS = process.env.ORT_THREADS ? Number(process.env.ORT_THREADS) : undefined;
const PROMPTS = ['a red circle on a blue background', 'a green square on a white background', 'a yellow triangle on a black background', 'a blue circle on a red background'];

function spawnApp(entry: string, env: Record<string, string>, readyLine: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry)], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res, rej) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(readyLine)) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        res(child);
      }
    };
    child.stdout!.on('data', onData);
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rate = (images: number, ms: number) => (images / (ms / 1000)).toFixed(3);

async function main(): Promise<void> {
  console.log(`bench:batching on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; ${ROUNDS} rounds of 4 requests, ${STEPS} steps; ORT_THREADS ${THREADS ?? 'default'}`);
  const pipeline = await loadPipeline(join(ROOT, 'models/tiny-sd'), { threads: THREADS });
  let round = 0;
  const bare = async () => {
    const t = performance.now();
    const seed = 5000 + 4 * round++;
    const settled = await pipeline.generateBatch(PROMPTS.map((text, i) => ({ prompts: [{ text, weight: 1 }], steps: STEPS, seed: seed + i, outputFormat: 'png' })));
    if (settled.some((s) => s.status !== 'fulfilled')) throw new Error('bare batch failed');
    return performance.now() - t;
  };

  const redis = await startTestRedis({ private: true });
  const artifacts = mkdtempSync(join(tmpdir(), 'sdq-bench-artifacts-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR: join(ROOT, 'models'), ARTIFACTS_DIR: artifacts, LOG_LEVEL: 'warn', ...(THREADS ? { ORT_THREADS: String(THREADS) } : {}) };
  const children: ChildProcess[] = [];
  try {
    const api = await spawnApp('apps/api/src/main.ts', { ...env, RATE_LIMIT: '1000000', MAX_ACTIVE_JOBS: '0', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, ADMIN_TOKEN, LOG_LEVEL: 'info' }, 'sdq api listening');
    children.push(api);
    const account = await fetch(`${url}/v1/admin/accounts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', credits: 1_000_000 }),
    });
    const { api_key: key } = (await account.json()) as { api_key: string };
    // four synchronous Stability calls at once (Accept: image/png), as four clients would send them
    const service = async () => {
      const t = performance.now();
      const seed = 5000 + 4 * round++;
      await Promise.all(
        PROMPTS.map(async (text, i) => {
          const res = await fetch(`${url}/v1/generation/tiny-sd/text-to-image`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'image/png' },
            body: JSON.stringify({ text_prompts: [{ text }], steps: STEPS, seed: seed + i }),
          });
          await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`service answered ${res.status}`);
        }),
      );
      return performance.now() - t;
    };

    const results: Record<string, { bare: number; service: number; paired: number; batches: number; jobs: number }> = {};
    for (const [mode, workerEnv] of [
      ['batching (WORKER_BATCH_SIZE=4)', { WORKER_BATCH_SIZE: '4' }],
      ['one job at a time (WORKER_BATCH_SIZE=1)', { WORKER_BATCH_SIZE: '1' }],
    ] as const) {
      const healthPort = await freePort();
      const worker = await spawnApp('apps/worker/src/main.ts', { ...env, ENGINES: 'tiny-sd', HEALTH_PORT: String(healthPort), HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'info', ...workerEnv }, 'worker ready');
      await bare();
      await service();
      let bareMs = 0;
      let serviceMs = 0;
      const ratios: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const b = await bare();
        const s = await service();
        bareMs += b;
        serviceMs += s;
        ratios.push(b / s);
      }
      // how the jobs were grouped: batches and jobs in them, from the worker's own metrics
      const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
      const read = (name: string) => Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').pop() ?? 0);
      results[mode] = { bare: bareMs, service: serviceMs, paired: median(ratios), batches: read('sdq_worker_batch_jobs_count'), jobs: read('sdq_worker_batch_jobs_sum') };
      await stop(worker);
    }
    const images = 4 * ROUNDS;
    const bareAll = Object.values(results).reduce((s, r) => s + r.bare, 0);
    const bareRate = (2 * images) / (bareAll / 1000);
    console.log('');
    console.log('| measure | images/s | share of bare batch-4 (totals) | share, median of paired rounds |');
    console.log('|---|---|---|---|');
    console.log(`| bare pipeline, batch of 4 | ${bareRate.toFixed(3)} | 100 % | 100 % |`);
    for (const [mode, r] of Object.entries(results)) {
      const serviceRate = images / (r.service / 1000);
      const grouping = r.batches ? `, ${r.jobs} jobs in ${r.batches} batches` : '';
      console.log(`| service, 4 concurrent requests, ${mode}${grouping} | ${rate(images, r.service)} | ${((serviceRate / bareRate) * 100).toFixed(1)} % | ${(r.paired * 100).toFixed(1)} % |`);
    }
  } finally {
    await Promise.all(children.map(stop));
    await redis.close();
    rmSync(artifacts, { recursive: true, force: true });
    await pipeline.dispose();
  }
}

await main();
