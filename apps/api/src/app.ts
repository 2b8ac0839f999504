/**
 * Wiring: createApp builds the Express app from its parts; startServer makes the parts from a Config,
 * listens, runs the sweeper, and returns a close function (tests start the API in-process with it).
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { AdapterCatalog } from './adapters';
import { PromptBlocklist } from './moderation';
import { adapterRoutes } from './adapters.routes';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import { a1111Routes, falRoutes, openaiModels, openaiRoutes, replicateModels, replicateRoutes, stabilityV1Routes, v2betaEngines, v2betaRoutes } from './dialects';
import { discoverEngines, type EngineInfo } from '@sdq/pipeline/engines';
import { ConfigError, portInUseMessage, queueNameForEngine, ServiceError, type Storage } from '@sdq/contracts';
import { CreditsService, IdempotencyStore, PriceTable, RateLimiter } from '@sdq/credits';
import { JobCharge, JobEventLog } from '@sdq/jobs';
import { createStorage } from '@sdq/storage';
import type { Webhooks } from '@sdq/webhooks';
import { webhooksFromConfig } from '@sdq/webhooks/config';
import { AccountsService } from './accounts.service';
import { Pulls } from './pulls';
import { adminRoutes } from './admin.routes';
import { requireAdmin, requireApiKey } from './auth';
import type { Config } from './config';
import { refuseHostileQuery } from './body';
import { errorHandler, notFound } from './errors';
import { JobsService } from './jobs.service';
import { ApiMetrics } from './metrics';
import { Shutdown } from './shutdown';
import { createLogger } from './logger';
import { requestLog } from './request-log';
import { buildOpenApi } from './openapi';
import { JobQueue } from './queue';
import { artifactRoutes, engineRoutes, healthRoutes, jobRoutes } from './routes';
import { EnginePresence } from './presence';
import { CheckedStorage } from './storage-health';
import { Store } from './store';
import { studioRoutes } from './studio';
import { userRoutes } from './user.routes';
import { webhookRoutes } from './webhooks.routes';

export interface AppDeps {
  config: Config;
  logger: Logger;
  store: Store;
  queue: JobQueue;
  storage: Storage;
  engines: Map<string, EngineInfo>;
  aliases: Map<string, string>;
  presence: EnginePresence;
  jobs: JobsService;
  prices: PriceTable;
  credits: CreditsService;
  limiter: RateLimiter;
  accounts: AccountsService;
  webhooks: Webhooks;
  /** Built here when absent. */
  metrics?: ApiMetrics;
  /** LORA_DIR and EMBEDDINGS_DIR as requests use them; built here when absent. */
  adapters?: AdapterCatalog;
  /** PROMPT_BLOCKLIST_FILE; built here when absent (startServer builds it to follow the file). */
  blocklist?: PromptBlocklist;
  /** Model pulls from the Hub (admin); built here when absent. */
  pulls?: Pulls;
  shutdown?: Shutdown;
}

/** While Redis is down, answer 503 at once instead of waiting on a dead connection. */
function requireRedis(store: Store): RequestHandler {
  return (_req, _res, next) =>
    next(store.ready ? undefined : new ServiceError('service_unavailable', 'the job store (Redis) is unreachable; retry shortly'));
}

export function createApp(deps: AppDeps): Express {
  const { config, logger, store, storage, engines, aliases, presence, jobs, prices, credits, limiter, accounts, webhooks } = deps;
  // Checked before anything listens: a V2BETA_ENGINES typo stops start-up.
  const services = v2betaEngines(config.v2betaEngines ?? [], engines ?? new Map(), aliases ?? new Map());
  const models = openaiModels(config.openaiModels ?? [], engines ?? new Map(), aliases ?? new Map());
  // checked at start (a REPLICATE_MODELS typo stops it), then read again per request: engines come and go
  replicateModels(config.replicateModels ?? [], engines ?? new Map(), aliases ?? new Map());
  const replicate = () => replicateModels(config.replicateModels ?? [], engines, aliases);
  const metrics = deps.metrics ?? new ApiMetrics(deps.queue, () => [...(engines ?? new Map()).keys()]);
  const shutdown = deps.shutdown ?? new Shutdown();
  const adapters = deps.adapters ?? new AdapterCatalog(config.loraDir, config.embeddingsDir, logger);
  const blocklist = deps.blocklist ?? new PromptBlocklist(config.promptBlocklistFile, logger);
  // what every generating dialect is given
  const generation = { config, engines, aliases, presence, jobs, prices, credits, limiter, adapters, blocklist };
  const app = express();
  app.disable('x-powered-by');
  app.use(metrics.middleware());
  app.use(shutdown.refuseWhileStopping());
  app.set('trust proxy', false);
  app.use(requestLog(logger));
  // Built on first use: with PORT=0 the public URL is known only once the server listens.
  let openapi: Record<string, unknown> | undefined;
  // Prometheus scrapes it (no credentials: counts and timings only, no account or job data).
  app.get('/metrics', (_req, res, next) => {
    metrics.registry.metrics().then((text) => res.type(metrics.registry.contentType).send(text), next);
  });
  app.get('/openapi.json', (_req, res) => {
    openapi ??= buildOpenApi(config.publicUrl);
    res.json(openapi);
  });
  app.use(refuseHostileQuery);
  app.use(healthRoutes(store, storage));
  app.use(artifactRoutes(storage, config));
  if (config.studio) app.use(studioRoutes(config));
  app.use('/v1', requireRedis(store));
  const pulls = deps.pulls ?? new Pulls(store, config.keyPrefix, { modelsDir: config.modelsDir, endpoint: config.hub.endpoint, token: config.hub.token, logger });
  app.use('/v1/admin', requireAdmin(config.adminToken, store), adminRoutes(accounts, presence, config.credits.tiers, pulls));
  app.use('/v1', requireApiKey(store));
  app.use(engineRoutes(engines, aliases, prices, presence));
  app.use(adapterRoutes(engines, adapters));
  app.use(stabilityV1Routes(generation));
  app.use(jobRoutes(jobs, shutdown, config.http.eventStreams));
  app.use(webhookRoutes({ config, jobs, webhooks }));
  app.use(userRoutes(accounts));
  app.use(openaiRoutes({ ...generation, models }));
  app.use('/sdapi', requireRedis(store), requireApiKey(store));
  app.use(a1111Routes({ ...generation, store }));
  app.use('/replicate', requireRedis(store), requireApiKey(store));
  app.use(replicateRoutes({ ...generation, models: replicate, webhookSecret: (accountId) => webhooks.accounts.secret(accountId) }));
  app.use('/fal', requireRedis(store), requireApiKey(store));
  app.use(falRoutes(generation));
  app.use('/v2beta', requireRedis(store), requireApiKey(store));
  app.use(v2betaRoutes({ ...generation, services }));
  app.use(notFound);
  app.use(errorHandler);
  return app;
}

export interface RunningServer {
  url: string;
  port: number;
  deps: AppDeps;
  close(): Promise<void>;
}

/** The engines under MODELS_DIR, and every other id that reaches one (manifest aliases, ENGINE_ALIASES). */
export interface EngineCatalog {
  /** By folder id: each has its own queue. */
  engines: Map<string, EngineInfo>;
  /** alias -> engine id. */
  aliases: Map<string, string>;
}

/**
 * Engines under MODELS_DIR whose ids can name a queue; a folder with a bad manifest is logged and left
 * out. An alias that names no engine, or an id twice, stops start-up: an operator's typo is loud.
 */
/** The engines under MODELS_DIR that can have a queue; a folder that is not one is passed to `refused`, with the log line saying why. */
function servableEngines(modelsDir: string, refused: (id: string, reason: string, why: string) => void): Map<string, EngineInfo> {
  const engines = new Map<string, EngineInfo>();
  for (const engine of discoverEngines(modelsDir, (id, err) => refused(id, err.message, 'engine not served: its manifest is invalid'))) {
    try {
      queueNameForEngine(engine.id);
      engines.set(engine.id, engine);
    } catch (err) {
      refused(engine.id, (err as Error).message, 'engine not served: its id cannot name a queue');
    }
  }
  return engines;
}

export function loadEngines(modelsDir: string, logger: Logger, extraAliases: [string, string][] = []): EngineCatalog {
  const engines = servableEngines(modelsDir, (id, reason, why) => logger.error({ engine: id, reason }, why));
  const aliases = new Map<string, string>();
  const add = (alias: string, target: string, source: string) => {
    if (!engines.has(target)) throw new ConfigError(`Invalid environment: ${source} names ${alias}=${target}, but ${target} is not an engine under MODELS_DIR (found: ${[...engines.keys()].join(', ') || 'none'})`);
    if (engines.has(alias) || (aliases.has(alias) && aliases.get(alias) !== target)) throw new ConfigError(`Invalid environment: ${source} names ${alias} for ${target}, but ${alias} is already ${engines.has(alias) ? 'an engine' : `an alias of ${aliases.get(alias)}`}`);
    aliases.set(alias, target);
  };
  for (const engine of engines.values()) for (const alias of engine.manifest.aliases ?? []) add(alias, engine.id, `${engine.dir}/sdq-engine.json aliases`);
  for (const [alias, target] of extraAliases) add(alias, target, 'ENGINE_ALIASES');
  return { engines, aliases };
}

/** The API's parts: records, queues, storage, credits, jobs, webhooks (the CLI and tests build them too). */
export interface Core {
  engines: Map<string, EngineInfo>;
  aliases: Map<string, string>;
  store: Store;
  queue: JobQueue;
  storage: Storage;
  credits: CreditsService;
  idempotency: IdempotencyStore;
  jobs: JobsService;
  webhooks: Webhooks;
  metrics: ApiMetrics;
}

export function createCore(config: Config, logger: Logger): Core {
  const { engines, aliases } = loadEngines(config.modelsDir, logger, config.engineAliases);
  const store = new Store(config.redisUrl, config.keyPrefix, config.redisTimeoutMs);
  const queue = new JobQueue({ redisUrl: config.redisUrl, prefix: config.queuePrefix, keyPrefix: config.keyPrefix, engines: [...engines.keys()], timeoutMs: config.redisTimeoutMs, logger, redis: store.redis });
  const storage = new CheckedStorage(
    createStorage('s3' in config.storage ? { s3: config.storage.s3 } : { local: { ...config.storage.local, publicUrl: () => config.publicUrl } }),
  );
  const credits = new CreditsService(store.redis, { prefix: config.keyPrefix });
  const idempotency = new IdempotencyStore(store.redis, { prefix: config.keyPrefix });
  const webhooks = webhooksFromConfig(config.webhooks, { redis: store.redis, prefix: config.keyPrefix, queue: queue.deliveries, logger });
  const metrics = new ApiMetrics(queue, () => [...engines.keys()]);
  const charge = new JobCharge({ credits, logger });
  const events = new JobEventLog(store.redis, config.keyPrefix, logger);
  const jobs = new JobsService({ config, store, queue, storage, credits, charge, events, idempotency, logger, webhooks, metrics });
  return { engines, aliases, store, queue, storage, credits, idempotency, jobs, webhooks, metrics };
}

export async function startServer(config: Config, opts: { logger?: Logger } = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config);
  const { engines, aliases, store, queue, storage, credits, jobs, webhooks, metrics } = createCore(config, logger);
  store.redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  let redisWasReady = false;
  store.redis.on('ready', () => {
    if (redisWasReady) logger.info('redis connection restored');
    redisWasReady = true;
  });
  store.redis.on('close', () => redisWasReady && logger.warn('redis connection lost; answering 503 until it returns'));
  // A bad PRICES_FILE stops start-up here, naming the file and the field.
  const prices = PriceTable.load({ file: config.credits.pricesFile });
  const limiter = new RateLimiter(store.redis, { prefix: config.keyPrefix, limit: config.credits.rateLimit, windowMs: config.credits.rateLimitWindowMs });
  const accounts = new AccountsService(store, credits, { startingCredits: config.credits.startingCredits });
  // Whichever process hears a job end first closes its hold (the worker does too; closing is once).
  queue.onEnd((jobId) => {
    jobs.closeHold(jobId).catch((err) => logger.warn({ job_id: jobId, err: (err as Error).message }, 'could not close the hold; the reconciler will'));
  });
  const presence = new EnginePresence(store.redis, config.keyPrefix);
  const shutdown = new Shutdown();
  // a pull this process finishes is an engine at once, not at the next look
  const pulls = new Pulls(store, config.keyPrefix, { modelsDir: config.modelsDir, endpoint: config.hub.endpoint, token: config.hub.token, logger, onChanged: () => void refreshEngines() });
  // a blocklist file that was set but cannot be read stops start-up: the API never runs unmoderated by mistake
  let blocklist: PromptBlocklist;
  try {
    blocklist = new PromptBlocklist(config.promptBlocklistFile, logger);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  blocklist.start();
  const deps: AppDeps = { config, logger, store, queue, storage, engines, aliases, presence, jobs, prices, credits, limiter, accounts, webhooks, metrics, shutdown, pulls, blocklist };
  const app = createApp(deps);
  // Give Redis a moment to connect so the first requests are not 503s; start without it if it is down.
  if (!store.ready) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, config.redisTimeoutMs);
      store.redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (!store.ready) logger.warn({ redis: config.redisUrl.replace(/\/\/[^@]*@/, '//***@') }, 'redis unreachable at start; answering 503 until it is');
  }
  // The engine set tells processes without the models folder (webhook delivery) which queues to hear;
  // each sweep adds them again (a Redis that lost them, or was down at start).
  const registerEngines = () => queue.registerEngines([...engines.keys()]);
  store.enableKeyCache();
  await registerEngines().catch(() => {});

  const server = app.listen(config.port, config.host);
  // A slow or stalled client cannot hold a connection for ever: headers, then the whole request, are
  // timed (multipart bodies also have an idle cut-off, see uploads.ts); node checks every second.
  server.headersTimeout = config.http.headersTimeoutMs;
  server.requestTimeout = config.http.requestTimeoutMs;
  server.keepAliveTimeout = config.http.keepAliveTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new ConfigError(portInUseMessage('PORT', config.port)) : err));
  });
  const port = (server.address() as AddressInfo).port;
  if (config.publicUrlFromPort) {
    const host = !config.host || config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host;
    config.publicUrl = `http://${host}:${port}`;
  }

  // The sweeper: one API process at a time (a lease), removing jobs whose retention has passed, then
  // closing the holds whose job ended (or vanished) while every process that could have closed them was down.
  let migrated = false;
  const sweep = async () => {
    if (!store.ready) return;
    try {
      await registerEngines();
      if (!(await store.takeLease('sweeper', config.sweepInterval * 1000))) return;
      if (!migrated) {
        const count = await accounts.migrateLegacyCredits();
        if (count) logger.info({ accounts: count }, 'legacy starting credits moved to the ledger');
        migrated = true;
      }
      await jobs.sweep();
      const unserved = await jobs.failUnserved(presence, config.unservedJobTimeout * 1000);
      if (unserved) logger.warn({ jobs: unserved, timeout_s: config.unservedJobTimeout }, 'queued jobs failed: no live worker served their engine');
      const reconciled = await jobs.reconcileHolds();
      if (reconciled.settled.length || reconciled.released.length) {
        logger.info({ settled: reconciled.settled.length, released: reconciled.released.length }, 'reconciled holds nobody had closed');
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'sweep failed; retrying next interval');
    }
  };
  const sweeper = setInterval(sweep, config.sweepInterval * 1000);
  sweeper.unref();

  // Engines added to MODELS_DIR (a pull, a copy) or removed while the API runs, every ENGINE_REFRESH_MS:
  // an added one is described and priced from then on, a removed one is an unknown engine, and its queued
  // jobs fail (engine_unavailable, refunded) while running ones finish. Hidden folders are never engines,
  // so a pull's staging folder is not taken half-way.
  let refreshing = false;
  // a folder that is not an engine is said once, not every look
  const reported = new Set<string>();
  const refreshEngines = async () => {
    // a MODELS_DIR gone (a volume unmounted) is not every engine removed: nothing changes until it is back
    if (refreshing || !existsSync(config.modelsDir)) return;
    refreshing = true;
    try {
      const found = servableEngines(config.modelsDir, (id, reason, why) => {
        if (reported.has(`${id}:${reason}`)) return;
        reported.add(`${id}:${reason}`);
        logger.error({ engine: id, reason }, why);
      });
      const added = [...found.keys()].filter((id) => !engines.has(id));
      const removed = [...engines.keys()].filter((id) => !found.has(id));
      // descriptions of the engines that stay are read again too: an edited sdq-engine.json takes effect
      for (const [id, info] of found) engines.set(id, info);
      for (const id of removed) engines.delete(id);
      for (const [alias, target] of aliases) if (removed.includes(target)) aliases.delete(alias);
      if (added.length) {
        queue.watch(added);
        await queue.registerEngines(added).catch(() => {});
        logger.info({ engines: added }, 'engines added (MODELS_DIR)');
      }
      for (const id of removed) {
        const failed = store.ready ? await jobs.failEngineRemoved(id) : 0;
        logger.warn({ engine: id, queued_jobs_failed: failed }, 'engine removed (MODELS_DIR): its queued jobs failed, refunded');
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not read MODELS_DIR; retrying');
    } finally {
      refreshing = false;
    }
  };
  const refresher = setInterval(() => void refreshEngines(), config.engineRefreshMs);
  refresher.unref();

  logger.info({ port, engines: [...engines.keys()], storage: storage.kind }, 'sdq api listening');
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    deps,
    close: async () => {
      blocklist.stop();
      clearInterval(sweeper);
      clearInterval(refresher);
      // No new connections; a request on a kept-alive one is answered 503 with Connection: close.
      shutdown.stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      shutdown.endStreams();
      // In-flight requests finish within the grace period; what is left then is cut.
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, config.shutdownGraceMs)));
      await Promise.race([closed, graceOver]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
      await queue.close().catch(() => {});
      await store.close();
      await storage.close?.();
    },
  };
}
