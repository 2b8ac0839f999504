/**
 * `npm run bench:webhooks`: how long after a job's end its job.completed webhook arrives, over many jobs
 * on several engines, beside how long the jobs themselves took. The compiled processes (dist/: the API,
 * one worker serving the engines, the delivery process) on a fresh Redis prefix, the delivery process
 * started first (before any engine is registered: the case issue 28 was about), a receiver in this
 * process on 127.0.0.1.
 *
 *   BENCH_JOBS (200)       jobs, spread over the engines in turn
 *   BENCH_ENGINES          engines (default tiny-sd,tiny-sdxl,tiny-sd3)
 *   BENCH_IN_FLIGHT (4)    jobs submitted and not yet finished at a time
 *
 * Delay = the receiver's arrival time - the job's finished_at (same machine, same clock).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const JOBS = Number(process.env.BENCH_JOBS ?? 200);
const ENGINES = (process.env.BENCH_ENGINES ?? 'tiny-sd,tiny-sdxl,tiny-sd3').split(',');
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 4);
const ADMIN = `bench-admin-${randomBytes(8).toString('hex')}`;

spawnSync(process.execPath, ['scripts/build.mjs', '--quiet'], { cwd: ROOT, stdio: 'inherit' });
const artifacts = mkdtempSync(join(tmpdir(), 'sdq-bench-webhooks-'));
const base = {
  PATH: process.env.PATH ?? '',
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  QUEUE_PREFIX: `bench-hooks-${randomBytes(3).toString('hex')}`,
  ARTIFACTS_DIR: artifacts,
  ARTIFACT_URL_SECRET: 'bench-artifact-secret-0123456789',
  WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  LOG_LEVEL: 'warn',
  GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
};
const children: ChildProcess[] = [];

function start(name: string, env: Record<string, string>, ready: (line: string) => boolean): Promise<void> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', `${name}.js`)], { cwd: ROOT, env: { ...base, ...env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((done, fail) => {
    let text = '';
    const look = (chunk: Buffer) => {
      text += String(chunk);
      if (ready(text)) done();
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => fail(new Error(`${name} exited ${code}: ${text.slice(-500)}`)));
  });
}

const arrivals = new Map<string, number>();
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const at = Date.now();
    const event = JSON.parse(body) as { type: string; data: { id: string } };
    if (event.type === 'job.completed' && !arrivals.has(event.data.id)) arrivals.set(event.data.id, at);
    res.end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

const apiPort = 20_000 + Math.floor(Math.random() * 20_000);
const api = `http://127.0.0.1:${apiPort}`;
try {
  await start('webhooks', { PUBLIC_URL: api, WEBHOOK_HEALTH_PORT: '0' }, (t) => t.includes('webhook delivery process ready'));
  await start('api', { PORT: String(apiPort), HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, RATE_LIMIT: '1000000', MAX_ACTIVE_JOBS: '1000' }, (t) => t.includes('sdq api listening'));
  await start('worker', { ENGINES: ENGINES.join(','), HEALTH_PORT: '0' }, (t) => t.includes('worker ready'));
  const account = await fetch(`${api}/v1/admin/accounts`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench', credits: 100000 }) });
  const { api_key: key } = (await account.json()) as { api_key: string };
  const auth = { authorization: `Bearer ${key}` };

  const ids: { id: string; engine: string }[] = [];
  let next = 0;
  const lane = async () => {
    while (next < JOBS) {
      const engine = ENGINES[next++ % ENGINES.length];
      const res = await fetch(`${api}/v1/generation/${engine}/text-to-image`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', prefer: 'respond-async' },
        body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, webhook: hookUrl }),
      });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
      const { id } = (await res.json()) as { id: string };
      ids.push({ id, engine });
      while (!arrivals.has(id)) await new Promise((r) => setTimeout(r, 20));
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const wall = (performance.now() - began) / 1000;

  const rows = new Map<string, { delay: number[]; run: number[] }>();
  for (const { id, engine } of ids) {
    const job = (await (await fetch(`${api}/v1/jobs/${id}`, { headers: auth })).json()) as { started_at: string; finished_at: string; status: string };
    if (job.status !== 'succeeded') throw new Error(`job ${id}: ${job.status}`);
    const row = rows.get(engine) ?? rows.set(engine, { delay: [], run: [] }).get(engine)!;
    row.delay.push(arrivals.get(id)! - Date.parse(job.finished_at));
    row.run.push(Date.parse(job.finished_at) - Date.parse(job.started_at));
  }
  const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
  console.log(`bench:webhooks: ${ids.length} jobs on ${ENGINES.join(', ')} (${IN_FLIGHT} in flight, 10 steps each) in ${wall.toFixed(1)} s`);
  console.log(['engine'.padEnd(12), 'jobs'.padStart(5), 'end->hook p50'.padStart(14), 'p99'.padStart(7), 'max'.padStart(7), 'job p50'.padStart(9), 'p99'.padStart(7)].join(' '));
  const all = { delay: [] as number[], run: [] as number[] };
  for (const [engine, row] of [...rows, ['all', all] as const]) {
    if (engine !== 'all') all.delay.push(...row.delay), all.run.push(...row.run);
    console.log(
      [engine.padEnd(12), String(row.delay.length).padStart(5), `${pct(row.delay, 50)} ms`.padStart(14), `${pct(row.delay, 99)} ms`.padStart(7), `${Math.max(...row.delay)} ms`.padStart(7), `${pct(row.run, 50)} ms`.padStart(9), `${pct(row.run, 99)} ms`.padStart(7)].join(' '),
    );
  }
} finally {
  for (const child of children.reverse()) child.kill('SIGTERM');
  receiver.close();
  await new Promise((r) => setTimeout(r, 1500));
  rmSync(artifacts, { recursive: true, force: true });
}
