/**
 * `npm run bench:startup`: how long sdq's commands and processes take to start, compiled (dist/, as
 * `npm start`, the bins and the Docker images run them) against the TypeScript through tsx (as every
 * start ran before), in the same run. Each case alternates the two, BENCH_ROUNDS (3) times; the median.
 *
 *   CLI: `sdq --help`, `npx sdq --help` (npm's own lookup included), `sdq accounts list` (Redis)
 *   processes: from spawn to the API's "listening" line, the worker's "ready" line (tiny-sd, its memory
 *   calibration included), the delivery process's "ready" line
 *
 * Needs Redis at REDIS_URL (default 127.0.0.1:6379); each round uses a fresh QUEUE_PREFIX.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

spawnSync(process.execPath, ['scripts/build.mjs', '--quiet'], { cwd: ROOT, stdio: 'inherit' });
const env = (extra: Record<string, string> = {}) => ({ ...process.env, QUEUE_PREFIX: `bench-startup-${randomBytes(3).toString('hex')}`, LOG_LEVEL: 'info', ...extra });

function timed(args: string[], extra: Record<string, string> = {}): number {
  const started = performance.now();
  const out = spawnSync(args[0], args.slice(1), { cwd: ROOT, env: env(extra), stdio: ['ignore', 'ignore', 'pipe'] });
  if (out.status !== 0) throw new Error(`${args.join(' ')} exited ${out.status}: ${String(out.stderr).slice(-400)}`);
  return performance.now() - started;
}

/** Spawn to the first line matching `ready`, then SIGTERM. */
function untilLine(args: string[], ready: RegExp, extra: Record<string, string>): Promise<number> {
  const started = performance.now();
  const child = spawn(args[0], args.slice(1), { cwd: ROOT, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let ms: number | undefined;
  return new Promise((done, fail) => {
    const look = (chunk: Buffer) => {
      text += String(chunk);
      if (ms !== undefined || !ready.test(text)) return;
      ms = performance.now() - started;
      child.kill('SIGTERM');
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.once('exit', (code) => (ms !== undefined ? done(ms) : fail(new Error(`${args.join(' ')} exited ${code} before ${ready}: ${text.slice(-400)}`))));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const node = process.execPath;
const tsx = (file: string) => [node, '--import', 'tsx', file];

const cases: { name: string; compiled: () => Promise<number> | number; source: () => Promise<number> | number }[] = [
  { name: 'sdq --help', compiled: () => timed([node, 'dist/sdq.js', '--help']), source: () => timed([...tsx('apps/api/src/cli.ts'), '--help']) },
  // npm's lookup of the bin included; the TypeScript side is npx running the same CLI through tsx
  { name: 'npx sdq --help', compiled: () => timed(['npx', 'sdq', '--help']), source: () => timed(['npx', 'tsx', 'apps/api/src/cli.ts', '--help']) },
  { name: 'sdq accounts list', compiled: () => timed([node, 'dist/sdq.js', 'accounts', 'list']), source: () => timed([...tsx('apps/api/src/cli.ts'), 'accounts', 'list']) },
  {
    name: 'API to listening',
    compiled: () => untilLine([node, 'dist/api.js'], /sdq api listening/, { PORT: '0' }),
    source: () => untilLine(tsx('apps/api/src/main.ts'), /sdq api listening/, { PORT: '0' }),
  },
  {
    name: 'worker to ready (tiny-sd)',
    compiled: () => untilLine([node, 'dist/worker.js'], /worker ready/, { ENGINES: 'tiny-sd', HEALTH_PORT: '0' }),
    source: () => untilLine(tsx('apps/worker/src/main.ts'), /worker ready/, { ENGINES: 'tiny-sd', HEALTH_PORT: '0' }),
  },
  {
    name: 'delivery process to ready',
    compiled: () => untilLine([node, 'dist/webhooks.js'], /delivery process ready/, { WEBHOOK_HEALTH_PORT: '0' }),
    source: () => untilLine(tsx('apps/webhooks/src/main.ts'), /delivery process ready/, { WEBHOOK_HEALTH_PORT: '0' }),
  },
];

console.log(`bench:startup, ${ROUNDS} rounds, median ms (node ${process.version})`);
console.log(['case'.padEnd(28), 'tsx'.padStart(8), 'dist'.padStart(8), 'saved'.padStart(8)].join(' '));
for (const c of cases) {
  const times = { compiled: [] as number[], source: [] as number[] };
  for (let i = 0; i < ROUNDS; i++) {
    times.source.push(await c.source());
    times.compiled.push(await c.compiled());
  }
  const [s, d] = [median(times.source), median(times.compiled)];
  console.log([c.name.padEnd(28), s.toFixed(0).padStart(8), d.toFixed(0).padStart(8), `${(((s - d) / s) * 100).toFixed(0)}%`.padStart(8)].join(' '));
}
