/**
 * The child of `npm run bench:models` that times engines as a worker loads them: per tiny engine, a cold
 * start (load the graphs, measure the memory model, first image) against a warm image, and the RSS the
 * process gives back when an engine is unloaded. A child, so that each GLIBC_TUNABLES is the process's
 * own from its start. Prints one JSON line.
 */
import { resolve } from 'node:path';
import pino from 'pino';
import { discoverEngines } from '@sdq/pipeline/engines';
import { ResidentMemory } from '@sdq/pipeline';
import { parseWorkerConfig } from '../apps/worker/src/config';
import { type LoadedEngine, loadEngine, WorkerMemory } from '../apps/worker/src/engines';

const ROOT = resolve(import.meta.dirname, '..');
const config = parseWorkerConfig({ MODELS_DIR: resolve(ROOT, 'models'), LOG_LEVEL: 'silent' });
const logger = pino({ level: 'silent' });
const memory = WorkerMemory.create(config, logger);
const rss = new ResidentMemory();

// an image of the first generation engine is what the upscaler is given (engines load in name order)
let input: Buffer | undefined;
async function firstImage(engine: LoadedEngine): Promise<void> {
  if ('pipeline' in engine) {
    const result = await engine.generate({ prompts: [{ text: 'a red circle on a blue background', weight: 1 }], steps: 10, cfgScale: 7, seed: 1, samples: 1, width: engine.pipeline.nativeWidth, height: engine.pipeline.nativeHeight });
    input ??= result.images[0].data;
  } else {
    await engine.upscaler.upscale({ image: input! });
  }
}

const engines: Record<string, { cold_ms: number; warm_ms: number }> = {};
let eviction: { engine: string; before_mb: number; after_mb: number } | undefined;
for (const info of discoverEngines(config.modelsDir)) {
  let started = performance.now();
  const engine = await loadEngine(info, config, logger);
  await memory.add(info.id, engine);
  await firstImage(engine);
  const cold = performance.now() - started;
  started = performance.now();
  await firstImage(engine);
  engines[info.id] = { cold_ms: Math.round(cold), warm_ms: Math.round(performance.now() - started) };
  const before = rss.now();
  await ('pipeline' in engine ? engine.pipeline.dispose() : engine.upscaler.dispose());
  await memory.remove(info.id, { forget: false });
  global.gc?.();
  const after = rss.now();
  if (info.id === (process.env.BENCH_EVICT ?? 'tiny-sdxl')) eviction = { engine: info.id, before_mb: Math.round(before / 2 ** 20), after_mb: Math.round(after / 2 ** 20) };
}
console.log(JSON.stringify({ engines, eviction }));
