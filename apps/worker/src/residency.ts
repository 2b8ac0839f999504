/**
 * Which engines a worker holds in memory. It serves every engine it selected (ENGINES, or each folder
 * under MODELS_DIR) but loads only WORKER_PRELOAD at start; any other is loaded when a job for it waits
 * (ColdStarts), first unloading the least recently used engines with no job running when the load would
 * pass WORKER_MODEL_MEMORY_MB or WORKER_MAX_LOADED_ENGINES. One load or unload at a time: each changes
 * what the memory bound measures at rest.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { EngineInfo } from '@sdq/pipeline/engines';
import { queueNameForEngine } from '@sdq/contracts';
import { PULL_RECORD } from '@sdq/hub';
import type { WorkerConfig } from './config';
import { filesSignature, weightOf } from './folder-weight';
import { type BatchObserver, disposeEngine as dispose, type LoadedEngine, loadEngine, type WorkerMemory } from './engines';
import type { WorkerMetrics } from './metrics';
import type { Presence } from './presence';
import type { LoraSets, SetRoom } from './lora-sets';
import type { EngineWorkers } from './queue';

export interface ResidencyParts {
  config: WorkerConfig;
  logger: Logger;
  /** The engines loaded, shared with EngineWorkers (which runs their jobs). */
  engines: Map<string, LoadedEngine>;
  providers: Record<string, string>;
  memory: WorkerMemory;
  workers: EngineWorkers;
  presence: Presence;
  metrics?: WorkerMetrics;
  onBatch?: BatchObserver;
}

export type LoadReason = 'preload' | 'job' | 'added';

export class Residency {
  /** What this worker serves: the engines loaded and those it loads when a job for one waits. */
  readonly servable = new Map<string, EngineInfo>();
  readonly loading = new Set<string>();
  /** Engines that could not be loaded here, and why: not served until their files change. */
  readonly failed = new Map<string, string>();
  private readonly failedAs = new Map<string, string>();
  private readonly weights = new Map<string, number>();
  /** Folders seen once while the worker runs, by their files: taken when the next look finds them the same. */
  private readonly arriving = new Map<string, string>();
  /** Loads done (preloads included) and unloads, since start. */
  loads = 0;
  unloads = 0;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly parts: ResidencyParts) {}

  get loaded(): string[] {
    return [...this.parts.engines.keys()];
  }

  /**
   * The engines found (at start, or by a look at MODELS_DIR: `settle`): new ones are served (and loaded
   * at once with `load`), ones gone are unloaded and no longer served. While the worker runs, a new
   * folder is taken once its files are the same on two looks in a row (one being copied is not taken
   * half-way), or at once when a pull put it there (a pull renames its folder into place whole). A
   * folder that failed is served again only once its files change: a broken graph may be large.
   */
  async follow(found: EngineInfo[], { load, settle = false }: { load?: LoadReason; settle?: boolean } = {}): Promise<void> {
    const { presence, logger } = this.parts;
    const ids = new Set(found.map((e) => e.id));
    const added: string[] = [];
    for (const id of [...this.arriving.keys()]) if (!ids.has(id)) this.arriving.delete(id);
    for (const info of found) {
      if (this.servable.has(info.id)) continue;
      if (settle && !existsSync(join(info.dir, PULL_RECORD))) {
        const signature = filesSignature(info.dir);
        const seen = this.arriving.get(info.id);
        this.arriving.set(info.id, signature);
        if (seen !== signature) continue;
      }
      this.arriving.delete(info.id);
      if (this.failed.has(info.id)) {
        if (this.failedAs.get(info.id) === filesSignature(info.dir)) continue;
        this.failed.delete(info.id);
      }
      try {
        queueNameForEngine(info.id);
      } catch (err) {
        this.fail(info, (err as Error).message);
        continue;
      }
      this.servable.set(info.id, info);
      this.weights.set(info.id, weightOf(info.dir));
      added.push(info.id);
    }
    for (const id of [...this.failed.keys()]) if (!ids.has(id)) this.failed.delete(id);
    const gone = [...this.servable.keys()].filter((id) => !ids.has(id));
    for (const id of gone) this.servable.delete(id);
    if (added.length || gone.length) await presence.setEngines([...this.servable.keys()]);
    for (const id of gone) {
      await this.parts.workers.unwatch(id);
      if (this.parts.engines.has(id)) await this.exclusive(() => this.unload(id, 'removed'));
      logger.info({ engine: id }, 'engine removed (MODELS_DIR): no longer served');
    }
    if (load) for (const id of added) await this.load(id, load);
  }

  /**
   * Loads a served engine, unloading the least recently used idle ones first when the bounds need it.
   * False when it could not: no room now (every loaded engine busy), or the load failed (the engine is
   * then `failed` here, logged once, and no longer claimed).
   */
  load(id: string, reason: LoadReason): Promise<boolean> {
    return this.exclusive(async () => {
      const info = this.servable.get(id);
      if (!info) return false;
      if (this.parts.engines.has(id)) return true;
      const { config, logger, engines, providers, memory, workers, presence, metrics } = this.parts;
      const weight = this.weights.get(id) ?? 0;
      if (config.modelMemoryBytes !== undefined && weight > config.modelMemoryBytes) {
        this.fail(info, `its weights (${mb(weight)} MB) are over WORKER_MODEL_MEMORY_MB (${mb(config.modelMemoryBytes)} MB): this worker can never hold it`);
        await presence.setEngines([...this.servable.keys()]);
        return false;
      }
      const victims = this.victimsFor(id);
      if (!victims) {
        logger.debug({ engine: id }, 'no room to load the engine now: every loaded engine has a job running');
        return false;
      }
      for (const victim of victims) await this.unload(victim, 'evicted');
      const started = performance.now();
      this.loading.add(id);
      presence.touch();
      try {
        const engine = await loadEngine(info, config, logger, this.parts.onBatch, (bytes, sets) => this.roomForSet(id, bytes, sets));
        engines.set(id, engine);
        try {
          await memory.add(id, engine);
        } catch (err) {
          engines.delete(id);
          await dispose(engine);
          throw err;
        }
        providers[id] = engine.provider;
        workers.usedAt.set(id, Date.now());
        workers.add(id);
        await presence.setLoaded(this.loaded);
        this.loads++;
        metrics?.engineLoads.inc({ engine: id, reason });
        metrics?.engineLoadSeconds.observe({ engine: id }, (performance.now() - started) / 1000);
        logger.info({ engine: id, reason, ms: Math.round(performance.now() - started), weight_mb: mb(weight), loaded: this.loaded }, 'engine loaded: taking its jobs');
        return true;
      } catch (err) {
        this.fail(info, (err as Error).message);
        await presence.setEngines([...this.servable.keys()]);
        return false;
      } finally {
        this.loading.delete(id);
        presence.touch();
      }
    });
  }

  /** What a loaded engine holds: its files' weight and its adapter sets' graphs. */
  private heldBy(id: string): number {
    const engine = this.parts.engines.get(id);
    return (this.weights.get(id) ?? 0) + (engine && 'loraSets' in engine ? engine.loraSets.bytes : 0);
  }

  /**
   * Room under WORKER_MODEL_MEMORY_MB for a new adapter set of an engine: its own idle sets go first,
   * then other engines with no job running, least recently used first. `never`: the engine and the set
   * alone are over the bound; `busy`: there is no room until running jobs end.
   */
  roomForSet(id: string, bytes: number, sets: LoraSets): Promise<SetRoom> {
    return this.exclusive(async () => {
      const bound = this.parts.config.modelMemoryBytes;
      if (bound === undefined) return 'ok';
      if ((this.weights.get(id) ?? 0) + bytes > bound) return 'never';
      const used = () => [...this.parts.engines.keys()].reduce((sum, e) => sum + this.heldBy(e), 0);
      await sets.releaseIdle(() => used() + bytes <= bound);
      const { engines, workers } = this.parts;
      const idle = [...engines.keys()].filter((e) => e !== id && !workers.busy(e)).sort((a, b) => (workers.usedAt.get(a) ?? 0) - (workers.usedAt.get(b) ?? 0));
      while (used() + bytes > bound) {
        const victim = idle.shift();
        if (victim === undefined) return 'busy';
        await this.unload(victim, 'evicted');
      }
      return 'ok';
    });
  }

  /** Whether the engine could be loaded now (the bounds allow it, unloading idle engines if need be). */
  hasRoomFor(id: string): boolean {
    return this.victimsFor(id) !== undefined;
  }

  /** Engines being loaded and those that failed (with why), for the worker's report. */
  states(): Record<string, { state: 'loading' | 'failed'; reason?: string }> {
    return {
      ...Object.fromEntries([...this.failed].map(([id, reason]) => [id, { state: 'failed' as const, reason }])),
      ...Object.fromEntries([...this.loading].map((id) => [id, { state: 'loading' as const }])),
    };
  }

  /**
   * What to unload (least recently used first, none with a job running) so that the engine fits the
   * bounds; undefined when that cannot be done now.
   */
  private victimsFor(id: string): string[] | undefined {
    const { config, engines, workers } = this.parts;
    let count = engines.size;
    let bytes = [...engines.keys()].reduce((sum, e) => sum + this.heldBy(e), 0);
    const weight = this.weights.get(id) ?? 0;
    const idle = [...engines.keys()].filter((e) => !workers.busy(e)).sort((a, b) => (workers.usedAt.get(a) ?? 0) - (workers.usedAt.get(b) ?? 0));
    const victims: string[] = [];
    const fits = () => (config.maxLoadedEngines === undefined || count + 1 <= config.maxLoadedEngines) && (config.modelMemoryBytes === undefined || bytes + weight <= config.modelMemoryBytes);
    while (!fits()) {
      const victim = idle.shift();
      if (victim === undefined) return undefined;
      victims.push(victim);
      count--;
      bytes -= this.heldBy(victim);
    }
    return victims;
  }

  /** Unloads: the claim first, then its queue's Worker (its running jobs finish), then the graphs. */
  private async unload(id: string, reason: 'evicted' | 'removed'): Promise<void> {
    const { engines, providers, memory, workers, presence, metrics, logger } = this.parts;
    const engine = engines.get(id);
    if (!engine) return;
    const before = memory.resident();
    engines.delete(id);
    await presence.setLoaded(this.loaded);
    await workers.remove(id);
    delete providers[id];
    await dispose(engine);
    await memory.remove(id, { forget: reason === 'removed' });
    this.unloads++;
    metrics?.engineUnloads.inc({ engine: id, reason });
    logger.info({ engine: id, reason, rss_mb_before: mb(before), rss_mb_after: mb(memory.resident()), loaded: this.loaded }, reason === 'evicted' ? 'engine unloaded: least recently used, to make room' : 'engine unloaded');
  }

  private fail(info: EngineInfo, reason: string): void {
    this.servable.delete(info.id);
    // said once per reason: the same folder is tried again only when its files change
    if (this.failed.get(info.id) !== reason) this.parts.logger.error({ engine: info.id, dir: info.dir, reason }, 'engine not served: it failed to load');
    this.failed.set(info.id, reason);
    this.failedAs.set(info.id, filesSignature(info.dir));
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn, fn);
    this.turn = run.catch(() => {});
    return run;
  }
}

const COLD_POLL_MS = 250;
/** How long a worker holds an engine's load lock at most (a load that takes longer lets another try). */
const LOAD_LOCK_MS = 120_000;

/**
 * Loads a served engine when a job for it waits and no worker has it loaded, or when the job has waited
 * COLD_START_DELAY_MS for the workers that have (all busy). Only a worker with a free slot does, one
 * engine at a time, and only one worker per engine at once (a lock in Redis): the others see it loaded
 * and leave its jobs to it. The jobs waiting show the `loading model` phase meanwhile.
 */
export class ColdStarts {
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(
    private readonly residency: Residency,
    private readonly parts: Pick<ResidencyParts, 'config' | 'workers' | 'presence' | 'engines' | 'logger'>,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), COLD_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    const { config, workers, presence, engines, logger } = this.parts;
    try {
      for (const id of [...this.residency.servable.keys()]) {
        if (!workers.free) return;
        if (engines.has(id) || this.residency.loading.has(id)) continue;
        const waiting = await workers.waiting(id);
        if (!waiting) continue;
        const warm = await presence.othersLoaded(id);
        if (warm > 0 && Date.now() - waiting.since < config.coldStartDelayMs) continue;
        if (!this.residency.hasRoomFor(id)) continue;
        if (!(await presence.lockLoad(id, LOAD_LOCK_MS))) continue;
        try {
          // another worker may have finished loading it between the two looks
          if (warm === 0 && (await presence.othersLoaded(id)) > 0 && Date.now() - waiting.since < config.coldStartDelayMs) continue;
          logger.info({ engine: id, waiting: waiting.jobs.length, waited_ms: Math.max(0, Date.now() - waiting.since), loaded_elsewhere: warm }, 'loading an engine for its waiting jobs');
          await workers.showLoading(waiting.jobs);
          await this.residency.load(id, 'job');
        } finally {
          await presence.unlockLoad(id);
        }
        return;
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not look for jobs waiting for an engine not loaded; retrying');
    } finally {
      this.ticking = false;
    }
  }
}

const mb = (b: number) => Math.round(b / 2 ** 20);
