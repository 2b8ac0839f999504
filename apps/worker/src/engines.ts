/**
 * The engines this worker serves: every folder under MODELS_DIR that discoverEngines recognises,
 * restricted to ENGINES when it is set (an ENGINES entry that names no folder is a start-up error, not a
 * worker that silently serves less than asked), and which of them it loads at start (WORKER_PRELOAD).
 * How one engine is loaded is here; which are held in memory, residency.ts.
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
  type RuntimeOptions,
  SafetyChecker,
  checkerFolderOf,
  Upscaler,
} from '@sdq/pipeline';
import { DEFAULT_MAX_PIXELS, defaultEngineOf } from '@sdq/pipeline/engines';
import type { Logger } from 'pino';
import type { WorkerConfig } from './config';
import { LoraSets, type RoomForSet } from './lora-sets';

/**
 * A loaded engine and the execution provider its graphs got (cuda, cpu, ...). A generation engine's
 * `generate` batches compatible concurrent requests when WORKER_BATCH_SIZE > 1 (else it is the
 * pipeline's own).
 */
export type LoadedEngine =
  | { info: EngineInfo & { kind: 'generation' }; pipeline: DiffusionPipeline; generate(req: GenerateRequest): Promise<GenerateResult>; provider: string; loraSets: LoraSets }
  | { info: EngineInfo & { kind: 'upscale' }; upscaler: Upscaler; provider: string };

export class EngineSelectionError extends Error {}

/** The engines to serve, without loading them (cheap: reads JSON only). */
export function selectEngines(config: Pick<WorkerConfig, 'modelsDir' | 'engines'>, found = discoverEngines(config.modelsDir)): EngineInfo[] {
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

/**
 * The engines to load at start (WORKER_PRELOAD): all, the ones named (each must be served), or by
 * default the default engine (DEFAULT_ENGINE, else the first generation engine) when this worker serves
 * it, else its first engine.
 */
export function preloadEngines(config: Pick<WorkerConfig, 'modelsDir' | 'preload' | 'defaultEngine'>, found: EngineInfo[], selected: EngineInfo[]): string[] {
  const ids = selected.map((e) => e.id);
  if (config.preload === 'all') return ids;
  if (config.preload) {
    const missing = config.preload.filter((id) => !ids.includes(id));
    if (missing.length) throw new EngineSelectionError(`WORKER_PRELOAD names ${missing.join(', ')}, not an engine this worker serves (it serves: ${ids.join(', ') || 'none'})`);
    return config.preload;
  }
  const preferred = defaultEngineOf(found, config.defaultEngine);
  return preferred && ids.includes(preferred) ? [preferred] : ids.slice(0, 1);
}

export type BatchObserver = (engine: string, jobs: number, images: number) => void;

/** Loads one engine's graphs; throws (naming the folder's problem) when it cannot. */
export async function loadEngine(info: EngineInfo, config: WorkerConfig, logger: Logger, onBatch?: BatchObserver, roomForSet?: RoomForSet): Promise<LoadedEngine> {
  const runtime = {
    providers: config.providers,
    // Several providers are a priority list: fall back along it rather than refuse to start.
    fallback: config.providers.length > 1,
    threads: config.threads,
    warn: (message: string) => logger.warn(message),
  };
  const started = performance.now();
  let engine: LoadedEngine;
  if (info.kind === 'generation') {
    const pipeline = await loadPipeline(info.dir, runtime);
    const batcher = config.batchSize > 1 ? new GenerationBatcher(pipeline, { maxImages: config.batchSize, windowMs: config.batchWindowMs, onBatch: (jobs, images) => onBatch?.(info.id, jobs, images) }) : undefined;
    const generate = batcher ? (req: GenerateRequest) => batcher.generate(req) : (req: GenerateRequest) => pipeline.generate(req);
    engine = { info: info as EngineInfo & { kind: 'generation' }, pipeline, generate, provider: pipeline.model.unet.provider, loraSets: new LoraSets(pipeline, { loraDir: config.loraDir, embeddingsDir: config.embeddingsDir, max: config.loraSets, runtime, roomForSet }) };
  } else {
    const upscaler = await Upscaler.load(info.dir, runtime);
    engine = { info: info as EngineInfo & { kind: 'upscale' }, upscaler, provider: upscaler.model.provider };
  }
  await attachChecker(engine, info, config, runtime, logger);
  // which execution provider the engine got: a CUDA deployment that fell back to the CPU says so here
  logger.info({ engine: info.id, kind: info.kind, provider: engine.provider, ms: Math.round(performance.now() - started) }, `engine loaded on ${engine.provider}`);
  return engine;
}

/**
 * The engine's safety checker (its folder's, its manifest's, else SAFETY_CHECKER_DIR), loaded beside it.
 * One that fails to load fails the engine (it stays unserved, with the reason: fail closed), unless
 * SAFETY_MODE is off.
 */
async function attachChecker(engine: LoadedEngine, info: EngineInfo, config: WorkerConfig, runtime: RuntimeOptions, logger: Logger): Promise<void> {
  const dir = checkerFolderOf(info.dir, info.manifest.safety_checker, config.safetyCheckerDir);
  if (!dir) return;
  try {
    const checker = await SafetyChecker.load(dir, runtime);
    if ('pipeline' in engine) engine.pipeline.safety = checker;
    else engine.upscaler.safety = checker;
    logger.info({ engine: info.id, safety_checker: dir }, 'safety checker loaded');
  } catch (err) {
    const reason = `its safety checker ${dir} could not be loaded: ${(err as Error).message}`;
    if (config.safetyMode === 'off') {
      logger.warn({ engine: info.id }, `${reason}; served without one (SAFETY_MODE=off)`);
      return;
    }
    await disposeEngine(engine);
    throw new Error(`${reason} (an engine whose checker fails is not served unless SAFETY_MODE=off)`, { cause: err });
  }
}

/** The worker's memory bound as the API is told it: bytes runs may take, and each generation engine's model. */
export interface MemoryReport {
  budget: number;
  limit: number;
  /** Per engine: its model, and the pixels of one latent cell (the VAE's factor squared). */
  engines: Record<string, MemoryModel & { pixelsPerCell: number }>;
}

/**
 * The worker's memory bound: what the process holds at rest (the engines loaded) is measured, the rest of
 * WORKER_MEMORY_LIMIT_MB is the gate's capacity for runs, and each generation engine's per-image model is
 * measured (or read from the cache) and given to its pipeline. An engine loaded or removed while the
 * worker runs is measured the same way, at rest: the whole gate is held meanwhile, so no run is in flight.
 */
export class WorkerMemory {
  readonly report: MemoryReport;
  readonly gate: MemoryGate;
  private readonly meter = new ResidentMemory();
  private base: number;

  private constructor(
    private readonly config: WorkerConfig,
    private readonly logger: Logger,
  ) {
    this.base = this.meter.now();
    const budget = this.budget();
    this.gate = new MemoryGate(budget);
    this.report = { budget, limit: config.memoryLimitBytes, engines: {} };
  }

  /** The bound before any engine is loaded (engines join it with add). */
  static create(config: WorkerConfig, logger: Logger): WorkerMemory {
    const memory = new WorkerMemory(config, logger);
    if (memory.report.budget <= 0) logger.error({ limit_mb: mb(config.memoryLimitBytes), resident_mb: mb(memory.base) }, 'WORKER_MEMORY_LIMIT_MB is below what the process holds: every generation will be refused');
    return memory;
  }

  /** Bytes resident now. */
  resident(): number {
    return this.meter.now();
  }

  /** An engine just loaded: its weight leaves the budget, and its model is measured, at rest. */
  async add(id: string, engine: LoadedEngine): Promise<void> {
    const release = await this.gate.acquire(this.gate.capacity);
    try {
      this.remeasure();
      if (this.report.budget <= 0) this.logger.error({ engine: id, limit_mb: mb(this.config.memoryLimitBytes), resident_mb: mb(this.base) }, 'WORKER_MEMORY_LIMIT_MB is below what the loaded engines hold: every generation will be refused');
      await this.calibrate(id, engine);
    } finally {
      release();
    }
  }

  /**
   * An engine disposed: what it held comes back to the budget. Its per-image model stays in the report
   * when it was only unloaded (the API sizes requests for it by it; it is the same when loaded again).
   */
  async remove(id: string, { forget = true } = {}): Promise<void> {
    if (forget) delete this.report.engines[id];
    const release = await this.gate.acquire(this.gate.capacity);
    try {
      this.remeasure();
    } finally {
      release();
    }
  }

  private budget(): number {
    return Math.max(0, this.config.memoryLimitBytes - this.base);
  }

  private remeasure(): void {
    this.base = this.meter.now();
    this.report.budget = this.budget();
    this.gate.resize(this.report.budget);
    this.logger.info({ limit_mb: mb(this.config.memoryLimitBytes), resident_mb: mb(this.base), budget_mb: mb(this.report.budget) }, 'memory bound');
  }

  private async calibrate(id: string, engine: LoadedEngine): Promise<void> {
    if (!('pipeline' in engine)) return;
    const budget = this.report.budget;
    const { model, measured, ms } = await calibrateMemory(engine.pipeline, {
      budget,
      maxPixels: engine.info.sizes?.maxPixels ?? DEFAULT_MAX_PIXELS,
      cacheDir: this.config.memoryCacheDir,
      salt: `${RUNTIME_VERSION}:${engine.provider}`,
      resident: this.meter,
      base: this.base,
    });
    engine.pipeline.memory = { model, gate: this.gate };
    this.report.engines[id] = { ...model, pixelsPerCell: engine.pipeline.model.vaeScaleFactor ** 2 };
    const native = engine.pipeline.latentCells(engine.pipeline.nativeWidth, engine.pipeline.nativeHeight);
    this.logger.info(
      { engine: id, measured, ms: Math.round(ms), points: model.points.map((p) => [p.cells, mb(p.bytes)]), native_image_mb: mb(imageBytes(model, native)), images_per_run_native: engine.pipeline.imagesPerRun(engine.pipeline.nativeWidth, engine.pipeline.nativeHeight) },
      'engine memory model',
    );
  }
}

const mb = (b: number) => Math.round(b / 2 ** 20);

export async function disposeEngines(engines: Map<string, LoadedEngine>): Promise<void> {
  await Promise.all([...engines.values()].map((e) => disposeEngine(e)));
}

/** Releases an engine's sessions, its LoRA sets' first (they share its VAE and tokenizers). */
export async function disposeEngine(engine: LoadedEngine): Promise<void> {
  if ('pipeline' in engine) {
    await engine.loraSets.dispose();
    await engine.pipeline.dispose();
    await engine.pipeline.safety?.dispose();
  } else {
    await engine.upscaler.dispose();
    await engine.upscaler.safety?.dispose();
  }
}
