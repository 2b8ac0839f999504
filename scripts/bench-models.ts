/**
 * `npm run bench:models`: a pull's throughput against raw curl of the same files from the same Hub
 * stand-in, in the same run (goal: at least 0.9x), and what an engine costs to add while a worker runs
 * (load + memory measure + first image) against a warm first image.
 *
 *   BENCH_ROUNDS (3)        rounds, alternating pull and curl; the median
 *   BENCH_MODEL             the folder served as the repo (default models/tiny-sd)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pullModel } from '@sdq/hub';
import { startHubStandIn } from '../packages/hub/test/support/hub-stand-in';

const ROOT = resolve(import.meta.dirname, '..');
// async: the stand-in answers from this process
const run = promisify(execFile);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MODEL = resolve(ROOT, process.env.BENCH_MODEL ?? 'models/tiny-sd');
const REPO = 'bench/model';

const hub = await startHubStandIn({ repo: REPO, dir: MODEL });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mbps = (bytes: number, ms: number) => bytes / 2 ** 20 / (ms / 1000);
const pulls: number[] = [];
const curls: number[] = [];
let bytes = 0;
try {
  for (let round = 0; round < ROUNDS; round++) {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-bench-models-'));
    try {
      let started = performance.now();
      const { record } = await pullModel({ repo: REPO, name: 'pulled' }, { modelsDir: dir, endpoint: hub.url });
      pulls.push(performance.now() - started);
      bytes = record.files.reduce((s, f) => s + f.size, 0);
      // the same files with curl: one process per file, following the resolve redirects, as a script would
      started = performance.now();
      for (const f of record.files) {
        const out = join(dir, 'curl', f.path);
        await run('curl', ['-sfL', '--create-dirs', '-o', out, `${hub.url}/${REPO}/resolve/${record.commit}/${f.path}`]);
        if (statSync(out).size !== f.size) throw new Error(`curl fetched ${f.path} short`);
      }
      curls.push(performance.now() - started);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  await hub.close();
}
const [p, c] = [median(pulls), median(curls)];
console.log(`bench:models: ${ROUNDS} rounds of ${(bytes / 2 ** 20).toFixed(1)} MB from a Hub stand-in on 127.0.0.1 (${MODEL.replace(`${ROOT}/`, '')}), median`);
console.log(`  sdq pull (resolve, tree, download, sha256 and git blob checks, rename): ${p.toFixed(0)} ms, ${mbps(bytes, p).toFixed(0)} MB/s`);
console.log(`  curl of the same files:                                               ${c.toFixed(0)} ms, ${mbps(bytes, c).toFixed(0)} MB/s`);
console.log(`  pull / curl throughput: ${(c / p).toFixed(2)}x (goal >= 0.9x)`);

// Engines as a worker loads them: each round a fresh process (bench-models-engines.ts), the median;
// under the tunables sdq starts workers with, and with malloc's mmap threshold fixed beside (what
// decides whether an unloaded engine's memory goes back to the system or stays in malloc's heap).
type EngineRun = { engines: Record<string, { cold_ms: number; warm_ms: number }>; eviction: { engine: string; before_mb: number; after_mb: number } };
for (const tunables of [process.env.GLIBC_TUNABLES ?? 'glibc.malloc.hugetlb=1', 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=131072']) {
  const runs: EngineRun[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', join(ROOT, 'scripts/bench-models-engines.ts')], { cwd: ROOT, env: { ...process.env, GLIBC_TUNABLES: tunables } });
    runs.push(JSON.parse(stdout.trim().split('\n').pop()!) as EngineRun);
  }
  console.log(`\nengines, ${ROUNDS} fresh processes (GLIBC_TUNABLES=${tunables}), median: cold = load graphs + memory model + first image; warm = an image on the loaded engine`);
  for (const id of Object.keys(runs[0].engines)) {
    const cold = median(runs.map((r) => r.engines[id].cold_ms));
    const warm = median(runs.map((r) => r.engines[id].warm_ms));
    console.log(`  ${id.padEnd(18)} cold ${String(cold).padStart(5)} ms   warm ${String(warm).padStart(5)} ms   load costs ${String(cold - warm).padStart(5)} ms`);
  }
  const given = runs.map((r) => r.eviction.before_mb - r.eviction.after_mb);
  console.log(`  RSS given back when ${runs[0].eviction.engine} is unloaded, per run: ${runs.map((r) => `${r.eviction.before_mb} -> ${r.eviction.after_mb} MB`).join(', ')}; median ${median(given)} MB`);
}
