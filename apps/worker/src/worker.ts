/**
 * The worker process's parts, put together: engines, storage, Redis connections, the cancel watcher,
 * the engine queues' BullMQ Workers and the health server. main.ts runs it; tests start it in-process.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { createRedis, queueNameForEngine, type Storage } from '@sdq/contracts';
import { discoverEngines } from '@sdq/pipeline/engines';
import { createStorage } from '@sdq/storage';
import { availableCpus } from '@sdq/pipeline';
import { CreditsService } from '@sdq/credits';
import { JobCharge } from '@sdq/jobs/charge';
import { JobEventLog } from '@sdq/jobs/job-events';
import { CancelWatcher } from './cancel';
import { redactUrl, type WorkerConfig } from './config';
import { disposeEngines, type LoadedEngine, loadEngine, loadEngines, WorkerMemory } from './engines';
import { HANDLERS, type JobHandlers } from './handlers';
import { portOf, startHealthServer } from './health';
import { WorkerMetrics } from './metrics';
import { HoldCloser } from './holds';
import { Presence } from './presence';
import { EngineWorkers } from './queue';

export interface RunningWorker {
  engines: string[];
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
  let engines = new Map<string, LoadedEngine>();
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
      if (!ready) failing.push('engines not loaded');
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
  let memory: WorkerMemory | undefined;
  const onBatch = (engine: string, jobs: number) => metrics.batchJobs.observe({ engine }, jobs);
  const providers: Record<string, string> = {};
  // engines it could not load (why), and those it is loading while it runs: reported with each heartbeat
  const notLoaded = new Map<string, string>();
  const loading = new Set<string>();
  try {
    engines = await loadEngines(config, logger, onBatch, notLoaded);
    memory = await WorkerMemory.bound(config, engines, logger);
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
    for (const [id, e] of engines) providers[id] = e.provider;
    presence = new Presence(redis, config.keyPrefix, `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, [...engines.keys()], logger, {
      host: hostname(),
      pid: process.pid,
      providers,
      memory: memory.report,
      startedAt: Date.now(),
      status: () => ({ current: [...engineWorkers.current], done: engineWorkers.done }),
      engineStates: () => ({
        ...Object.fromEntries([...notLoaded].map(([id, reason]) => [id, { state: 'failed' as const, reason }])),
        ...Object.fromEntries([...loading].map((id) => [id, { state: 'loading' as const }])),
      }),
    });
    const live = presence;
    workers.onChange = () => live.touch();
    await presence.start();
    ready = true;
  } catch (err) {
    health.close();
    redis.disconnect();
    subscriber.disconnect();
    await disposeEngines(engines);
    throw err;
  }
  logger.info({ engines: [...engines.keys()], health_port: portOf(health) }, 'worker ready: taking jobs');

  let closed: Promise<void> | undefined;
  // A worker serving every engine (ENGINES unset) follows MODELS_DIR while it runs, every
  // ENGINE_REFRESH_MS: a folder added (pulled, copied whole; hidden ones never) is loaded, measured and
  // claimed; a folder removed stops being served (its claim first, then its running jobs finish).
  let refreshing = false;
  // a folder that failed is tried again only once its files change (not every look: a broken graph may be large)
  const failedAs = new Map<string, string>();
  const refresh = async () => {
    if (refreshing || closed || !existsSync(config.modelsDir)) return;
    refreshing = true;
    try {
      const found = discoverEngines(config.modelsDir, () => {});
      const ids = new Set(found.map((e) => e.id));
      for (const info of found) {
        if (engines.has(info.id) || closed) continue;
        const signature = filesSignature(info.dir);
        if (notLoaded.has(info.id) && failedAs.get(info.id) === signature) continue;
        try {
          queueNameForEngine(info.id);
          loading.add(info.id);
          presence!.touch();
          const engine = await loadEngine(info, config, logger, onBatch);
          engines.set(info.id, engine);
          providers[info.id] = engine.provider;
          await memory!.add(info.id, engine);
          workers!.add(info.id);
          await presence!.setEngines([...engines.keys()]);
          notLoaded.delete(info.id);
          logger.info({ engine: info.id }, 'engine added (MODELS_DIR): taking its jobs');
        } catch (err) {
          // tried again once its files change (a folder still being copied), said once per reason
          if (notLoaded.get(info.id) !== (err as Error).message) logger.error({ engine: info.id, dir: info.dir, reason: (err as Error).message }, 'engine not served: it failed to load');
          notLoaded.set(info.id, (err as Error).message);
          failedAs.set(info.id, signature);
        } finally {
          loading.delete(info.id);
        }
      }
      for (const [id, engine] of [...engines]) {
        if (ids.has(id) || closed) continue;
        engines.delete(id);
        delete providers[id];
        await presence!.setEngines([...engines.keys()]);
        await workers!.remove(id);
        await ('pipeline' in engine ? engine.pipeline.dispose() : engine.upscaler.dispose());
        await memory!.remove(id);
        logger.info({ engine: id }, 'engine removed (MODELS_DIR): no longer served');
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not follow MODELS_DIR; retrying');
    } finally {
      refreshing = false;
    }
  };
  const refresher = config.engines ? undefined : setInterval(() => void refresh(), config.engineRefreshMs);
  refresher?.unref();
  return {
    engines: [...engines.keys()],
    healthPort: portOf(health),
    close: (graceMs = config.shutdownGraceMs) =>
      (closed ??= (async () => {
        ready = false;
        clearInterval(refresher);
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

/** The names, sizes and times of a folder's files: what changes when a copy goes on or a file is replaced. */
function filesSignature(dir: string): string {
  const parts: string[] = [];
  const walk = (d: string, depth: number) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const stats = statSync(path);
      if (stats.isDirectory()) {
        if (depth < 3) walk(path, depth + 1);
      } else parts.push(`${path}:${stats.size}:${stats.mtimeMs}`);
    }
  };
  try {
    walk(dir, 0);
  } catch {
    return '';
  }
  return parts.join('|');
}
