/**
 * The engines this worker serves, loaded once at start: every folder under MODELS_DIR that
 * discoverEngines recognises, restricted to ENGINES when it is set. An ENGINES entry that names no
 * folder is a start-up error, not a worker that silently serves less than asked. Each engine loads on
 * its own: a folder that fails (a missing graph, an unknown family) is logged once and skipped, and the
 * others serve; only a worker left with no engine at all refuses to start.
 */
import {
  calibrateMemory,
  type DiffusionPipeline,
  discoverEngines,
  type EngineInfo,
  type GenerateRequest,
  type GenerateResult,
  GenerationBatcher,
  imageBytes,
  loadPipeline,
  MemoryGate,
  type MemoryModel,
  ResidentMemory,
  RUNTIME_VERSION,
  Upscaler,
} from '@sdq/pipeline';
import { DEFAULT_MAX_PIXELS } from '@sdq/pipeline/engines';
import type { Logger } from 'pino';
import type { WorkerConfig } from './config';

/**
 * A loaded engine and the execution provider its graphs got (cuda, cpu, ...). A generation engine's
 * `generate` batches compatible concurrent requests when WORKER_BATCH_SIZE > 1 (else it is the
 * pipeline's own).
 */
export type LoadedEngine =
  | { info: EngineInfo & { kind: 'generation' }; pipeline: DiffusionPipeline; generate(req: GenerateRequest): Promise<GenerateResult>; provider: string }
  | { info: EngineInfo & { kind: 'upscale' }; upscaler: Upscaler; provider: string };

export class EngineSelectionError extends Error {}

/** The engines to serve, without loading them (cheap: reads JSON only). */
export function selectEngines(config: Pick<WorkerConfig, 'modelsDir' | 'engines'>): EngineInfo[] {
  const found = discoverEngines(config.modelsDir);
  const names = found.map((e) => e.id);
  if (!config.engines) {
    if (found.length === 0) throw new EngineSelectionError(`no engine under MODELS_DIR ${config.modelsDir}: it needs folders with a model_index.json or an upscaler graph`);
    return found;
  }
  const missing = config.engines.filter((id) => !names.includes(id));
  if (missing.length > 0) {
    throw new EngineSelectionError(`ENGINES names ${missing.join(', ')}, not found under MODELS_DIR ${config.modelsDir} (found: ${names.join(', ') || 'none'})`);
  }
  return found.filter((e) => config.engines!.includes(e.id));
}

export async function loadEngines(config: WorkerConfig, logger: Logger, onBatch?: (engine: string, jobs: number, images: number) => void): Promise<Map<string, LoadedEngine>> {
  const runtime = {
    providers: config.providers,
    // Several providers are a priority list: fall back along it rather than refuse to start.
    fallback: config.providers.length > 1,
    threads: config.threads,
    warn: (message: string) => logger.warn(message),
  };
  const loaded = new Map<string, LoadedEngine>();
  const failed: string[] = [];
  for (const info of selectEngines(config)) {
    const started = performance.now();
    try {
      let provider: string;
      if (info.kind === 'generation') {
        const pipeline = await loadPipeline(info.dir, runtime);
        provider = pipeline.model.unet.provider;
        const batcher = config.batchSize > 1 ? new GenerationBatcher(pipeline, { maxImages: config.batchSize, windowMs: config.batchWindowMs, onBatch: (jobs, images) => onBatch?.(info.id, jobs, images) }) : undefined;
        const generate = batcher ? (req: GenerateRequest) => batcher.generate(req) : (req: GenerateRequest) => pipeline.generate(req);
        loaded.set(info.id, { info: info as EngineInfo & { kind: 'generation' }, pipeline, generate, provider });
      } else {
        const upscaler = await Upscaler.load(info.dir, runtime);
        provider = upscaler.model.provider;
        loaded.set(info.id, { info: info as EngineInfo & { kind: 'upscale' }, upscaler, provider });
      }
      // which execution provider the engine got: a CUDA deployment that fell back to the CPU says so here
      logger.info({ engine: info.id, kind: info.kind, provider, ms: Math.round(performance.now() - started) }, `engine loaded on ${provider}`);
    } catch (err) {
      // One line naming the folder and why; its jobs stay queued for a worker that can serve them.
      failed.push(`${info.id}: ${(err as Error).message}`);
      logger.error({ engine: info.id, dir: info.dir, reason: (err as Error).message }, 'engine not served: it failed to load');
    }
  }
  if (loaded.size === 0) throw new EngineSelectionError(`no engine could be loaded: ${failed.join('; ')}`);
  return loaded;
}

/** The worker's memory bound as the API is told it: bytes runs may take, and each generation engine's model. */
export interface MemoryReport {
  budget: number;
  limit: number;
  /** Per engine: its model, and the pixels of one latent cell (the VAE's factor squared). */
  engines: Record<string, MemoryModel & { pixelsPerCell: number }>;
}

/**
 * Puts the generation engines under one memory bound: what the process holds at rest (the engines
 * loaded) is measured, the rest of WORKER_MEMORY_LIMIT_MB is the gate's capacity for runs, and each
 * engine's per-image model is measured (or read from the cache) and given to its pipeline.
 */
export async function boundMemory(config: WorkerConfig, engines: Map<string, LoadedEngine>, logger: Logger): Promise<MemoryReport> {
  const resident = new ResidentMemory();
  const base = resident.now();
  const budget = config.memoryLimitBytes - base;
  const mb = (b: number) => Math.round(b / 2 ** 20);
  if (budget <= 0) logger.error({ limit_mb: mb(config.memoryLimitBytes), resident_mb: mb(base) }, 'WORKER_MEMORY_LIMIT_MB is below what the loaded engines hold: every generation will be refused');
  const gate = new MemoryGate(Math.max(0, budget));
  const report: MemoryReport = { budget: Math.max(0, budget), limit: config.memoryLimitBytes, engines: {} };
  for (const [id, engine] of engines) {
    if (!('pipeline' in engine)) continue;
    const { model, measured, ms } = await calibrateMemory(engine.pipeline, {
      budget: Math.max(0, budget),
      maxPixels: engine.info.sizes?.maxPixels ?? DEFAULT_MAX_PIXELS,
      cacheDir: config.memoryCacheDir,
      salt: `${RUNTIME_VERSION}:${engine.provider}`,
      resident,
      base,
    });
    engine.pipeline.memory = { model, gate };
    report.engines[id] = { ...model, pixelsPerCell: engine.pipeline.model.vaeScaleFactor ** 2 };
    const native = engine.pipeline.latentCells(engine.pipeline.nativeWidth, engine.pipeline.nativeHeight);
    logger.info(
      { engine: id, measured, ms: Math.round(ms), points: model.points.map((p) => [p.cells, mb(p.bytes)]), native_image_mb: mb(imageBytes(model, native)), images_per_run_native: engine.pipeline.imagesPerRun(engine.pipeline.nativeWidth, engine.pipeline.nativeHeight) },
      'engine memory model',
    );
  }
  logger.info({ limit_mb: mb(config.memoryLimitBytes), resident_mb: mb(base), budget_mb: mb(Math.max(0, budget)) }, 'memory bound');
  return report;
}

export async function disposeEngines(engines: Map<string, LoadedEngine>): Promise<void> {
  await Promise.all([...engines.values()].map((e) => ('pipeline' in e ? e.pipeline.dispose() : e.upscaler.dispose())));
}
