/**
 * The worker process's parts, put together: engines, storage, Redis connections, the cancel watcher,
 * the engine queues' BullMQ Workers and the health server. main.ts runs it; tests start it in-process.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { createRedis, type Storage } from '@sdq/contracts';
import { createStorage } from '@sdq/storage';
import { availableCpus } from '@sdq/pipeline';
import { CreditsService } from '@sdq/credits';
import { JobCharge } from '@sdq/jobs/charge';
import { JobEventLog } from '@sdq/jobs/job-events';
import { CancelWatcher } from './cancel';
import { redactUrl, type WorkerConfig } from './config';
import { boundMemory, disposeEngines, type LoadedEngine, loadEngines } from './engines';
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
  try {
    engines = await loadEngines(config, logger, (engine, jobs) => metrics.batchJobs.observe({ engine }, jobs));
    const memory = await boundMemory(config, engines, logger);
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
    const providers = Object.fromEntries([...engines].map(([id, e]) => [id, e.provider]));
    presence = new Presence(redis, config.keyPrefix, `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, [...engines.keys()], logger, {
      host: hostname(),
      pid: process.pid,
      providers,
      memory,
      startedAt: Date.now(),
      status: () => ({ current: [...engineWorkers.current], done: engineWorkers.done }),
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
  return {
    engines: [...engines.keys()],
    healthPort: portOf(health),
    close: (graceMs = config.shutdownGraceMs) =>
      (closed ??= (async () => {
        ready = false;
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
