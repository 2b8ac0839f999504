/**
 * `npm run bench:upload-burst`: 300 concurrent 9.5 MB multipart uploads (image-to-image dry runs) against
 * the API as its own process, sent once from one client process and once from CLIENTS separate processes,
 * to tell whose starvation the 408s of the hardening probe were: the server's upload idle timer firing on
 * clients it starved, or a client process that could not feed its own sockets.
 *
 * Per round: the answers by status, the upload times (median, p90, max), the API's peak resident memory,
 * and `/healthz` latency sampled every 250 ms from this process meanwhile. BENCH_UPLOADS (300),
 * BENCH_CLIENTS (6), BENCH_UPLOAD_MB (9.5).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startTestRedis } from '../test/support/redis';
import { spawnApi } from '../test/security/support';

const UPLOADS = Number(process.env.BENCH_UPLOADS ?? 300);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 6);
const BYTES = Math.round(Number(process.env.BENCH_UPLOAD_MB ?? 9.5) * 1024 * 1024);

type Outcome = { status: number | string; ms: number };

/** `n` uploads at once from this process; each answer's status (or the fetch error) and time. */
async function burst(url: string, key: string, n: number): Promise<Outcome[]> {
  // noise behind a PNG signature: the API reads all of it (and finds no image) once it has arrived
  const body = new Uint8Array(Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(BYTES - 8)]));
  return Promise.all(
    Array.from({ length: n }, async () => {
      const fd = new FormData();
      fd.append('text_prompts[0][text]', 'a red circle');
      fd.append('init_image', new Blob([body], { type: 'image/png' }), 'a.png');
      const started = performance.now();
      try {
        const res = await fetch(`${url}/v1/generation/gen-a/image-to-image?dry_run=true`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: fd });
        await res.arrayBuffer();
        return { status: res.status, ms: performance.now() - started };
      } catch (err) {
        return { status: ((err as Error).cause as { code?: string })?.code ?? (err as Error).message, ms: performance.now() - started };
      }
    }),
  );
}

if (process.argv[2] === '--client') {
  const outcomes = await burst(process.argv[3], process.argv[4], Number(process.argv[5]));
  process.stdout.write(JSON.stringify(outcomes));
  process.exit(0);
}

function clientProcess(url: string, key: string, n: number): Promise<Outcome[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--client', url, key, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Outcome[]) : reject(new Error(`client exited ${code}`))));
  });
}

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const kb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

const redis = await startTestRedis();
try {
  for (const [name, processes] of [['one client process', 1], [`${CLIENTS} client processes`, CLIENTS]] as const) {
    // a fresh API per round, so one round's heap does not count in the next
    const api = await spawnApi(redis, { MAX_UPLOADS_PER_KEY: '10000', RATE_LIMIT: '1000000', MAX_UPLOAD_BYTES: String(10 * 1024 * 1024), LOG_LEVEL: 'info', LOG_FORMAT: 'json' });
    try {
      const key = await api.account(`burst-${processes}`, 100);
      const rssBefore = kb(api.pid, 'VmRSS');
      let peak = rssBefore;
      const health: number[] = [];
      let running = true;
      const sampler = (async () => {
        while (running) {
          peak = Math.max(peak, kb(api.pid, 'VmRSS'));
          const started = performance.now();
          await fetch(`${api.url}/healthz`).then((r) => r.arrayBuffer()).catch(() => {});
          health.push(performance.now() - started);
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const started = performance.now();
      const per = Math.ceil(UPLOADS / processes);
      const outcomes = (await Promise.all(Array.from({ length: processes }, (_, i) => clientProcess(api.url, key, Math.min(per, UPLOADS - i * per))))).flat();
      const wall = performance.now() - started;
      running = false;
      await sampler;
      // what the server answered, from its request log: a 408 is its idle timer, a client error is not
      const served: Record<string, number> = {};
      for (const line of api.handle.lines) {
        if (!line.includes('image-to-image')) continue;
        const status = /"status":(\d{3})/.exec(line)?.[1];
        if (status) served[status] = (served[status] ?? 0) + 1;
      }
      const byStatus: Record<string, number> = {};
      for (const o of outcomes) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
      const ms = outcomes.map((o) => o.ms);
      console.log(
        `${name}: ${outcomes.length} uploads of ${(BYTES / 2 ** 20).toFixed(1)} MiB in ${(wall / 1000).toFixed(1)} s; the client saw ${JSON.stringify(byStatus)}, the server logged ${JSON.stringify(served)}; ` +
          `upload time median ${(q(ms, 0.5) / 1000).toFixed(1)} s, p90 ${(q(ms, 0.9) / 1000).toFixed(1)} s, max ${(Math.max(...ms) / 1000).toFixed(1)} s; ` +
          `API rss ${(rssBefore / 1024).toFixed(0)} -> peak ${(peak / 1024).toFixed(0)} MiB; /healthz median ${q(health, 0.5).toFixed(0)} ms, max ${Math.max(...health).toFixed(0)} ms`,
      );
    } finally {
      await api.close();
    }
  }
} finally {
  await redis.close();
}
