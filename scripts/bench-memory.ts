/**
 * `npm run bench:memory`: what a generation takes in memory, per engine, size and batch, beside the model
 * the worker fits (packages/pipeline/src/memory.ts), and what the process keeps after the run; with
 * onnxruntime's CPU arena (its default) and without it (sdq's), each in a fresh process.
 *
 *   npm run bench:memory                          the tiny engines under models/
 *   npm run bench:memory -- /path/to/sd15-random  any engine folders (an SD 1.5-sized model: not in CI)
 *
 * Per row: the peak resident memory above rest (Linux VmHWM, reset before the run) per image, the model's
 * prediction per image (fitted on this machine at load, as a worker does, with its safety factor), and
 * the resident memory after the run. BENCH_STEPS (2), BENCH_BATCHES (1,2,4), BENCH_SIZES (all, e.g.
 * 256,512) and BENCH_BUDGET_MB (what a worker would have for runs: the machine's memory less a tenth and
 * what the engine holds) shape the run; a size and batch predicted over the budget is skipped.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const MB = 2 ** 20;

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4] === 'arena');
else parent(process.argv.slice(2));

function parent(dirs: string[]): void {
  const engines = dirs.length ? dirs.map((d) => resolve(d)) : readdirSync(join(ROOT, 'models')).map((d) => join(ROOT, 'models', d)).filter((d) => existsSync(join(d, 'model_index.json')));
  console.log(`bench:memory on ${engines.length} engine(s); GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? '(unset)'}`);
  for (const dir of engines) {
    for (const arena of [true, false]) {
      // a fresh process each: what one run leaves behind must not count in the next mode
      const out = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', dir, arena ? 'arena' : 'no-arena'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: process.env });
      if (out.status !== 0) console.log(`  (${dir} with arena ${arena}: exited ${out.status})`);
    }
  }
}

async function child(dir: string, arena: boolean): Promise<void> {
  const { calibrateMemory, describeEngine, imageBytes, loadPipeline, ResidentMemory } = await import('@sdq/pipeline');
  const { DEFAULT_MAX_PIXELS } = await import('@sdq/pipeline/engines');
  type GenerationEngineInfo = import('@sdq/pipeline/engines').GenerationEngineInfo;
  const resident = new ResidentMemory();
  const id = dir.split('/').pop()!;
  const info = describeEngine(dir, id) as GenerationEngineInfo;
  const loadStarted = performance.now();
  const pipeline = await loadPipeline(dir, { memoryArena: arena, threads: process.env.ORT_THREADS ? Number(process.env.ORT_THREADS) : undefined });
  const base = resident.now();
  const budget = process.env.BENCH_BUDGET_MB ? Number(process.env.BENCH_BUDGET_MB) * MB : totalmem() * 0.9 - base;
  const maxPixels = info.sizes?.maxPixels ?? DEFAULT_MAX_PIXELS;
  const { model, ms } = await calibrateMemory(pipeline, { budget, maxPixels, resident, base });
  console.log(
    `\n${id} (${info.family}), arena ${arena ? 'on (onnxruntime default)' : 'off (sdq)'}: loaded in ${Math.round(performance.now() - loadStarted - ms)} ms, ${Math.round(base / MB)} MB at rest; ` +
      `model fitted in ${Math.round(ms)} ms from ${model.points.map((p) => `${p.cells} cells: ${Math.round(p.bytes / MB)} MB`).join(', ')} -> ${Math.round(model.fixed / MB)} MB + ${(model.perCell / 1024).toFixed(2)} KB/cell + ${model.perCellSquared.toFixed(3)} B/cell^2`,
  );
  // peak/image counts from rest before the model was fitted, as the worker's budget does: memory the
  // allocator kept from earlier runs counts as taken (it dominates the smallest rows)
  console.log('  size      batch  peak/image MB  model/image MB  ratio  before MB  after MB  ms');
  const step = pipeline.model.vaeScaleFactor * pipeline.model.unetMultiple;
  const native = Math.min(pipeline.nativeWidth, pipeline.nativeHeight);
  const maxSide = Math.floor(Math.sqrt(maxPixels) / step) * step;
  const sides = process.env.BENCH_SIZES
    ? process.env.BENCH_SIZES.split(',').map(Number)
    : [...new Set([native / 2, native, native * 2, native * 4, maxSide].map((s) => Math.round(s / step) * step))].filter((s) => s >= step && s <= maxSide).sort((a, b) => a - b);
  const batches = (process.env.BENCH_BATCHES ?? '1,2,4').split(',').map(Number);
  const steps = Number(process.env.BENCH_STEPS ?? 2);
  for (const side of sides) {
    const cells = pipeline.latentCells(side, side);
    for (const batch of batches) {
      const predicted = imageBytes(model, cells);
      if (predicted * batch > budget) {
        console.log(`  ${`${side}x${side}`.padEnd(9)} ${String(batch).padStart(5)}  skipped: predicted ${Math.round((predicted * batch) / MB)} MB, over the budget of ${Math.round(budget / MB)} MB`);
        continue;
      }
      const before = resident.now();
      const started = performance.now();
      const { peak } = await resident.peakDuring(() => pipeline.generate({ prompts: [{ text: 'a red circle on a blue background' }], width: side, height: side, steps, cfgScale: 7, samples: batch, seed: 1 }));
      const ms = performance.now() - started;
      const perImage = (peak - base) / batch;
      console.log(
        `  ${`${side}x${side}`.padEnd(9)} ${String(batch).padStart(5)}  ${(perImage / MB).toFixed(0).padStart(13)}  ${(predicted / MB).toFixed(0).padStart(14)}  ${(perImage / predicted).toFixed(2).padStart(5)}  ${(before / MB).toFixed(0).padStart(9)}  ${(resident.now() / MB).toFixed(0).padStart(8)}  ${ms.toFixed(0)}`,
      );
    }
  }
}
