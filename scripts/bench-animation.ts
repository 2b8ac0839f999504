/**
 * `npm run bench:animation`: two measures of animations through the service (API and worker as child
 * processes, as `npm start` runs them; a private redis-server, local storage).
 *
 * 1. Speed: frames per second of a `travel` animation of FRAMES frames (tiny-sd, 128x128, 20 steps)
 *    against the same number of independent stills posted at once (Accept: image/png), with a worker
 *    that runs jobs one at a time (WORKER_BATCH_SIZE=1, the default) and one that batches them (4).
 *    Rounds alternate, so a slow spell of the shared machine weighs on both. Goal: >= 1.0x.
 * 2. Memory: the worker's peak RSS (VmHWM of its process) after one still and after animations of
 *    MEMORY_FRAMES_SMALL and MEMORY_FRAMES frames (travel, 512x512, 10 steps, WebP), each in a fresh
 *    worker: if frames were held, the long one's peak would grow by their pixels (a 512x512 frame is
 *    0.75 MB as RGB8, 3 MB as the pipeline's floats). BENCH_ONLY=speed skips it (the 120 frames take
 *    about 20 minutes on 2 CPU cores); BENCH_ONLY=memory runs it alone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, startTestRedis } from '../test/support/redis';

const ROOT = resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FRAMES = Number(process.env.BENCH_FRAMES ?? 16);
const MEMORY_FRAMES = Number(process.env.BENCH_MEMORY_FRAMES ?? 120);
const MEMORY_FRAMES_SMALL = 8;
const MEMORY_SIZE = Number(process.env.BENCH_MEMORY_SIZE ?? 512);
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
const LEFT = 'a large red circle at the left on a blue background';
const RIGHT = 'a large red circle at the right on a blue background';

function spawnApp(entry: string, env: Record<string, string>, readyLine: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry)], { cwd: ROOT, env: { PATH: process.env.PATH, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
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

/** A process's peak resident set (VmHWM) in MB. */
function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function main(): Promise<void> {
  console.log(`bench:animation on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`);
  const redis = await startTestRedis({ private: true });
  const artifacts = mkdtempSync(join(tmpdir(), 'sdq-bench-artifacts-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR: join(ROOT, 'models'), ARTIFACTS_DIR: artifacts, LOG_LEVEL: 'warn' };
  const children: ChildProcess[] = [];
  try {
    const api = await spawnApp('apps/api/src/main.ts', { ...env, RATE_LIMIT: '1000000', MAX_ACTIVE_JOBS: '0', SYNC_WAIT: '3600', MAX_ANIMATION_FRAMES: '1000', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, ADMIN_TOKEN, LOG_LEVEL: 'info' }, 'sdq api listening');
    children.push(api);
    const account = await fetch(`${url}/v1/admin/accounts`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench', credits: 10_000_000 }) });
    const { api_key: key } = (await account.json()) as { api_key: string };
    const headers = (accept: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json', accept });
    const animation = async (frames: number, size: number, steps: number, seed: number) => {
      const t = performance.now();
      const body = JSON.stringify({ keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed }, { frame: frames - 1, text_prompts: [{ text: RIGHT }], seed }], frames, steps, width: size, height: size, mode: 'travel' });
      // the job at once, then its end: a long animation outlasts fetch's 5-minute wait for headers
      const res = await fetch(`${url}/v1/generation/tiny-sd/animation`, { method: 'POST', headers: headers('application/json'), body });
      const { id } = (await res.json()) as { id: string };
      if (res.status !== 202) throw new Error(`animation answered ${res.status}`);
      for (;;) {
        const job = (await (await fetch(`${url}/v1/jobs/${id}`, { headers: headers('application/json') })).json()) as { status: string; artifacts: { url: string }[] };
        if (job.status === 'succeeded') {
          await (await fetch(job.artifacts[0].url)).arrayBuffer();
          return performance.now() - t;
        }
        if (job.status !== 'queued' && job.status !== 'running') throw new Error(`animation ${id} ${job.status}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const stills = async (frames: number, seed: number) => {
      const t = performance.now();
      await Promise.all(
        Array.from({ length: frames }, async (_, i) => {
          const res = await fetch(`${url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: headers('image/png'), body: JSON.stringify({ text_prompts: [{ text: i < frames / 2 ? LEFT : RIGHT }], steps: 20, seed: seed + i }) });
          await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`still answered ${res.status}`);
        }),
      );
      return performance.now() - t;
    };
    const worker = async (extra: Record<string, string>) => {
      const w = await spawnApp('apps/worker/src/main.ts', { ...env, ENGINES: 'tiny-sd', HEALTH_PORT: String(await freePort()), HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'info', ...extra }, 'worker ready');
      children.push(w);
      return w;
    };

    const only = process.env.BENCH_ONLY;
    if (only !== 'memory') {
      console.log(`\n1. speed: a travel animation of ${FRAMES} frames vs ${FRAMES} stills at once (128x128, 20 steps), ${ROUNDS} rounds each\n`);
      console.log('| worker | animation frames/s | stills frames/s | animation / stills |');
      console.log('|---|---|---|---|');
      for (const batch of ['1', '4']) {
        const w = await worker({ WORKER_BATCH_SIZE: batch });
        await animation(4, 128, 20, 1);
        await stills(4, 1);
        let a = 0;
        let s = 0;
        for (let r = 0; r < ROUNDS; r++) {
          a += await animation(FRAMES, 128, 20, 100 + r);
          s += await stills(FRAMES, 200 + r * FRAMES);
        }
        const fps = (ms: number) => (FRAMES * ROUNDS) / (ms / 1000);
        console.log(`| WORKER_BATCH_SIZE=${batch} | ${fps(a).toFixed(2)} | ${fps(s).toFixed(2)} | ${(fps(a) / fps(s)).toFixed(2)}x |`);
        await stop(w);
      }
    }
    if (only === 'speed') return;
    console.log(`\n2. memory: the worker's peak RSS (VmHWM), ${MEMORY_SIZE}x${MEMORY_SIZE}, 10 steps, travel, WebP; a fresh worker each\n`);
    console.log('| run | seconds | worker peak RSS (MB) |');
    console.log('|---|---|---|');
    for (const [label, run] of [
      ['one still', async () => {
        const t = performance.now();
        const res = await fetch(`${url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: headers('image/png'), body: JSON.stringify({ text_prompts: [{ text: LEFT }], steps: 10, width: MEMORY_SIZE, height: MEMORY_SIZE, seed: 1 }) });
        await res.arrayBuffer();
        return performance.now() - t;
      }],
      [`animation, ${MEMORY_FRAMES_SMALL} frames`, () => animation(MEMORY_FRAMES_SMALL, MEMORY_SIZE, 10, 3)],
      [`animation, ${MEMORY_FRAMES} frames`, () => animation(MEMORY_FRAMES, MEMORY_SIZE, 10, 3)],
    ] as const) {
      const w = await worker({});
      const ms = await run();
      console.log(`| ${label} | ${(ms / 1000).toFixed(1)} | ${peakRssMb(w.pid!).toFixed(0)} |`);
      await stop(w);
    }
    const frameMb = (MEMORY_SIZE * MEMORY_SIZE * 3) / 2 ** 20;
    console.log(`\n(${MEMORY_FRAMES} frames of ${MEMORY_SIZE}x${MEMORY_SIZE} would hold ${(MEMORY_FRAMES * frameMb).toFixed(0)} MB as RGB8, ${(MEMORY_FRAMES * frameMb * 4).toFixed(0)} MB as float)`);
  } finally {
    await Promise.all(children.map(stop));
    await redis.close();
    rmSync(artifacts, { recursive: true, force: true });
  }
}

await main();
