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
