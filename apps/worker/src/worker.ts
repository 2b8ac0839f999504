/**
 * The worker process's parts, put together: engines, storage, Redis connections, the cancel watcher,
 * the engine queues' BullMQ Workers and the health server. main.ts runs it; tests start it in-process.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { createRedis, type Storage } from '@sdq/contracts';
import { discoverEngines } from '@sdq/pipeline/engines';
import { createStorage } from '@sdq/storage';
import { availableCpus, ffmpegEncoders } from '@sdq/pipeline';
import { CreditsService } from '@sdq/credits';
import { JobCharge } from '@sdq/jobs/charge';
import { JobEventLog } from '@sdq/jobs/job-events';
import { CancelWatcher } from './cancel';
import { redactUrl, type WorkerConfig } from './config';
import { disposeEngines, EngineSelectionError, type LoadedEngine, preloadEngines, selectEngines, WorkerMemory } from './engines';
import { HANDLERS, type JobHandlers } from './handlers';
import { portOf, startHealthServer } from './health';
import { WorkerMetrics } from './metrics';
import { HoldCloser } from './holds';
import { Presence } from './presence';
import { EngineWorkers } from './queue';
import { ColdStarts, Residency } from './residency';

export interface RunningWorker {
  /** The engines it serves: loaded, or loaded when a job for one waits. */
  readonly engines: string[];
  /** The engines it has loaded now. */
  readonly loaded: string[];
  /** Engines loaded (preloads included) and unloaded since it started. */
  readonly loads: number;
  readonly unloads: number;
  /** The health server's port (useful with HEALTH_PORT=0). */
  healthPort: number;
  /** Stops taking jobs, finishes the running ones within the grace period, releases everything. */
  close(graceMs?: number): Promise<void>;
}

export async function startWorker(config: WorkerConfig, logger: Logger, handlers: JobHandlers = HANDLERS): Promise<RunningWorker> {
  logger.info(
    { redis: redactUrl(config.redisUrl), prefix: config.queuePrefix, models_dir: config.modelsDir, providers: config.providers, threads: config.threads ?? availableCpus(), concurrency: config.concurrency, batch_size: config.batchSize, storage: Object.keys(config.storage)[0] },
    'worker starting',
  );
  const engines = new Map<string, LoadedEngine>();
  let ready = false;
  // Health first, so an orchestrator sees a live process (not yet ready) while engines load.
  const redis = createRedis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  const subscriber = createRedis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  let workers: EngineWorkers | undefined;
  const metrics = new WorkerMetrics();
  const health: Server = await startHealthServer(
    config.healthHost,
    config.healthPort,
    async () => {
      const failing: string[] = [];
      if (!ready) failing.push('engines not loaded (WORKER_PRELOAD)');
      if (redis.status !== 'ready' || !(await pingWithin(redis, 1000))) failing.push('redis unreachable');
      if (ready && !workers?.running) failing.push('not taking jobs');
      return failing;
    },
    metrics.registry,
  );
  let redisDown = false;
  for (const [name, client] of [['redis', redis], ['redis subscriber', subscriber]] as const) {
    client.on('error', (err) => {
      // One line per outage, not one per reconnect attempt.
      if (!redisDown) logger.warn({ err: err.message, connection: name }, 'redis unreachable: retrying');
      redisDown = true;
    });
    client.on('ready', () => {
      if (redisDown) logger.info('redis reachable again');
      redisDown = false;
    });
  }

  let storage: Storage | undefined;
  let cancel: CancelWatcher | undefined;
  let presence: Presence | undefined;
  let residency: Residency | undefined;
  let cold: ColdStarts | undefined;
  const onBatch = (engine: string, jobs: number) => metrics.batchJobs.observe({ engine }, jobs);
  const providers: Record<string, string> = {};
  try {
    // what it serves is known before anything loads: claimed at once, loaded at start only WORKER_PRELOAD
    const found = discoverEngines(config.modelsDir);
    const selected = selectEngines(config, found);
    const preload = preloadEngines(config, found, selected);
    const memory = WorkerMemory.create(config, logger);
    storage = createStorage('s3' in config.storage ? config.storage : { local: { ...config.storage.local, publicUrl: 'http://unused.invalid', secret: 'the worker signs no URL' } });
    await Promise.all([redis.connect(), subscriber.connect()]);
    cancel = new CancelWatcher(subscriber, redis, config.keyPrefix, logger);
    await cancel.start();
    // counted where it was settled: the API's report of the same end finds the hold settled already
    const charge = new JobCharge({ credits: new CreditsService(redis, { prefix: config.keyPrefix }), logger, settled: metrics.creditsSettled });
    const holds = new HoldCloser(charge, logger);
    const events = new JobEventLog(redis, config.keyPrefix, logger);
    workers = new EngineWorkers({ config, engines, handlers, storage, cancel, holds, events, metrics, logger });
    workers.run();
    const engineWorkers = workers;
    let states: () => ReturnType<Residency['states']> = () => ({});
    // MP4 animations need ffmpeg with libx264: asked once, reported with the worker's presence
    const ffmpeg = await ffmpegEncoders(config.ffmpegPath);
    if (ffmpeg.problem) logger.warn({ ffmpeg: ffmpeg.problem }, 'no MP4 animations on this worker (FFMPEG_PATH): WebP and GIF only');
    presence = new Presence(redis, config.keyPrefix, `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, [], logger, {
      animationFormats: ['webp', 'gif', ...ffmpeg.formats],
      host: hostname(),
      pid: process.pid,
      providers,
      memory: memory.report,
      startedAt: Date.now(),
      status: () => ({ current: [...engineWorkers.current], done: engineWorkers.done }),
      engineStates: () => states(),
    });
    const live = presence;
    workers.onChange = () => live.touch();
    await presence.start();
    residency = new Residency({ config, logger, engines, providers, memory, workers, presence, metrics, onBatch });
    const held = residency;
    states = () => held.states();
    engineWorkers.loadEngine = (id) => held.load(id, 'job');
    await residency.follow(selected);
    for (const id of preload) await residency.load(id, 'preload');
    if (residency.servable.size === 0) {
      throw new EngineSelectionError(`no engine could be loaded: ${[...residency.failed].map(([id, reason]) => `${id}: ${reason}`).join('; ')}`);
    }
    cold = new ColdStarts(residency, { config, workers, presence, engines, logger });
    cold.start();
    ready = true;
  } catch (err) {
    health.close();
    cold?.stop();
    await presence?.stop().catch(() => {});
    await workers?.close(0).catch(() => {});
    await cancel?.close().catch(() => {});
    redis.disconnect();
    subscriber.disconnect();
    await disposeEngines(engines);
    throw err;
  }
  const held = residency;
  logger.info({ engines: [...held.servable.keys()], loaded: held.loaded, health_port: portOf(health) }, 'worker ready: taking jobs');

  let closed: Promise<void> | undefined;
  // A worker serving every engine (ENGINES unset) follows MODELS_DIR while it runs, every
  // ENGINE_REFRESH_MS: a folder added (pulled, copied whole; hidden ones never) is served (loaded at once
  // with WORKER_PRELOAD=all, else when a job for it waits); a folder removed stops being served (its
  // claim first, then its running jobs finish).
  let refreshing = false;
  const refresh = async () => {
    if (refreshing || closed || !existsSync(config.modelsDir)) return;
    refreshing = true;
    try {
      await held.follow(discoverEngines(config.modelsDir, () => {}), { load: config.preload === 'all' ? 'added' : undefined, settle: true });
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not follow MODELS_DIR; retrying');
    } finally {
      refreshing = false;
    }
  };
  const refresher = config.engines ? undefined : setInterval(() => void refresh(), config.engineRefreshMs);
  refresher?.unref();
  return {
    get engines() {
      return [...held.servable.keys()];
    },
    get loaded() {
      return held.loaded;
    },
    get loads() {
      return held.loads;
    },
    get unloads() {
      return held.unloads;
    },
    healthPort: portOf(health),
    close: (graceMs = config.shutdownGraceMs) =>
      (closed ??= (async () => {
        ready = false;
        clearInterval(refresher);
        cold!.stop();
        // Withdrawn first: the API stops accepting jobs only this worker could take.
        await presence?.stop();
        await workers!.close(graceMs);
        await cancel!.close();
        redis.disconnect();
        await storage!.close?.();
        await new Promise<void>((resolve) => health.close(() => resolve()));
        await disposeEngines(engines);
        logger.info('worker stopped');
      })()),
  };
}

async function pingWithin(redis: Redis, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([redis.ping().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
