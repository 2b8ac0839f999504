/**
 * `npm run bench:safety`: what the safety checker costs per image against the generation it checks, on
 * tiny-sd (128x128, 30 steps, one image a call) with the stand-in checker of
 * ../shared/models/tiny-safety-checker. Rounds alternate a generation without the checker (mode off)
 * and one with it (mode flag, so the image is checked and kept as made), the same prompt and seed, so a
 * slow spell of the machine weighs on both; the checker's own time (preprocessing and graph) is also
 * timed directly. Goal: under 3 % of a generation.
 */
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { loadPipeline, SafetyChecker } from '@sdq/pipeline';

const ROOT = resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const CHECKER = resolve(ROOT, '../shared/models/tiny-safety-checker');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  console.log(`bench:safety on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; ${ROUNDS} rounds, tiny-sd 128x128, 30 steps`);
  const pipeline = await loadPipeline(join(ROOT, 'models/tiny-sd'));
  const checker = await SafetyChecker.load(CHECKER);
  pipeline.safety = checker;
  const request = (safety: 'off' | 'flag') => ({ prompts: [{ text: 'a large red circle in the center on a red background' }], steps: 30, seed: 5, safety });
  await pipeline.generate(request('off'));
  await pipeline.generate(request('flag'));
  const off: number[] = [];
  const on: number[] = [];
  const alone: number[] = [];
  const image = { data: new Float32Array(3 * 128 * 128).fill(0.5), width: 128, height: 128 };
  for (let r = 0; r < ROUNDS; r++) {
    let t = performance.now();
    await pipeline.generate(request('off'));
    off.push(performance.now() - t);
    t = performance.now();
    await pipeline.generate(request('flag'));
    on.push(performance.now() - t);
    t = performance.now();
    await checker.flags([image]);
    alone.push(performance.now() - t);
  }
  const [a, b, c] = [median(off), median(on), median(alone)];
  console.log('');
  console.log('| measure (median of rounds) | ms per image | share of a generation |');
  console.log('|---|---|---|');
  console.log(`| generation, checker off | ${a.toFixed(1)} | 100 % |`);
  console.log(`| generation, checker on (mode flag) | ${b.toFixed(1)} | ${((b / a) * 100).toFixed(1)} % |`);
  console.log(`| the checker alone (CLIP preprocessing + graph) | ${c.toFixed(2)} | ${((c / a) * 100).toFixed(2)} % |`);
  await checker.dispose();
  await pipeline.dispose();
}

await main();
