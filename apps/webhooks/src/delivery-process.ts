/**
 * The webhook delivery process: reads every job's events from the job event stream (@sdq/jobs'
 * job-events.ts: one stream whatever the engine, from this deployment's last position) and queues their
 * webhooks (JobWebhooks), sweeps for job ends the stream did not carry, and runs the delivery queue's
 * worker. It builds the job object with @sdq/jobs, the API's own code, so a delivery carries exactly what
 * GET /v1/jobs/{id} answers (with local storage, artifact URLs are signed with ARTIFACT_URL_SECRET: the
 * API's must be the same). It needs Redis and storage, not the models, and no list of engines.
 *
 * Deliveries never run in the generation worker; several delivery processes may run side by side.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import express from 'express';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { ConnectionOptions } from 'bullmq';
import { bullmqConnection, ConfigError, createRedis, portInUseMessage, StorageUnavailableError } from '@sdq/contracts';
import { CreditsService } from '@sdq/credits';
import { failFastRedis, JobCharge, JobEventReader, JobRecords, JobView } from '@sdq/jobs';
import { createStorage } from '@sdq/storage';
import { webhooksFromConfig } from '@sdq/webhooks/config';
import type { DeliveryConfig } from './config';
import { JobWebhooks } from './job-webhooks.service';
import { DeliveryQueues } from './queue';

export interface RunningDeliveryProcess {
  jobWebhooks: JobWebhooks;
  /** Port of /healthz, /readyz and /metrics. */
  healthPort: number;
  /** Runs one sweep now (tests). */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/** Presigned S3 URLs cannot live longer than 7 days. */
const MAX_URL_EXPIRY_SECONDS = 7 * 86_400;

/**
 * Artifact URLs in a delivery must outlive its retries (the last attempt comes ~18 h after the first)
 * and stay usable for as long as the result is kept: a delivery's body is fixed when its event is
 * emitted, so they are signed for the result's retention, not for ARTIFACT_URL_EXPIRY's shorter default.
 */
export function webhookUrlExpiry(config: Pick<DeliveryConfig, 'artifactUrlExpiry' | 'resultRetention'>): number {
  return Math.max(config.artifactUrlExpiry, Math.min(config.resultRetention, MAX_URL_EXPIRY_SECONDS));
}

/** Resolves once the client is connected, or after timeoutMs (start-up then goes on, and reconnects later). */
function connected(records: JobRecords, timeoutMs: number): Promise<void> {
  if (records.ready) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    records.redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startDeliveryProcess(config: DeliveryConfig, logger: Logger): Promise<RunningDeliveryProcess> {
  const w = config.webhooks;
  // deliveries by outcome: delivered, retried (an attempt failed, another comes), gave_up (the last failed)
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sdq_webhooks_' });
  const deliveries = new Counter({ name: 'sdq_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome', labelNames: ['outcome'], registers: [registry] });
  // Health first, as the worker's: a supervisor (or test) sees the process up while it connects;
  // /readyz waits for the start to finish, then Redis and storage reachable, as the API's.
  let started = false;
  const health: Server = express()
    .get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    })
    .get('/readyz', (_req, res) => {
      const unavailable = (reason: string) => res.status(503).json({ status: 'unavailable', reason });
      if (!started) return unavailable('starting');
      if (!store.ready) return unavailable('Redis is unreachable');
      store
        .ping()
        .then(() => storage.check())
        .then(
          () => res.json({ status: 'ready' }),
          (err) => unavailable(err instanceof StorageUnavailableError ? `storage (${storage.kind}) refuses writes` : `Redis or storage (${storage.kind}) is unreachable: ${(err as Error).name}`),
        );
    })
    .get('/metrics', (_req, res, next) => {
      registry.metrics().then((text) => res.type(registry.contentType).send(text), next);
    })
    .listen(w.healthPort, w.healthHost);
  await new Promise<void>((resolve, reject) => {
    health.once('listening', resolve);
    health.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new ConfigError(portInUseMessage('WEBHOOK_HEALTH_PORT', w.healthPort)) : err),
    );
  });
  const healthPort = (health.address() as AddressInfo).port;
  const store = new JobRecords(failFastRedis(config.redisUrl, config.redisTimeoutMs), config.keyPrefix);
  store.redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  const queue = new DeliveryQueues({ redisUrl: config.redisUrl, prefix: config.queuePrefix, keyPrefix: config.keyPrefix, timeoutMs: config.redisTimeoutMs, logger, redis: store.redis });
  const storage = createStorage('s3' in config.storage ? { s3: config.storage.s3 } : { local: { ...config.storage.local, publicUrl: () => config.publicUrl } });
  const credits = new CreditsService(store.redis, { prefix: config.keyPrefix });
  const webhooks = webhooksFromConfig(w, { redis: store.redis, prefix: config.keyPrefix, queue: queue.deliveries, logger });
  const jobs = new JobView({ config: { publicUrl: config.publicUrl, artifactUrlExpiry: webhookUrlExpiry(config) }, store, queue, storage, credits, charge: new JobCharge({ credits, logger }), logger });
  const jobWebhooks = new JobWebhooks({ store, jobs, webhooks, logger });
  await connected(store, config.redisTimeoutMs);
  // Blocking reads: a connection of its own, no per-command retry limit, reconnecting while Redis is down.
  const eventsRedis = createRedis(config.redisUrl, { maxRetriesPerRequest: null, retryStrategy: (n: number) => Math.min(n * 100, 1000) });
  eventsRedis.on('error', (err) => logger.debug({ err: err.message }, 'job event stream connection error'));
  const events = new JobEventReader({ redis: eventsRedis, keyPrefix: config.keyPrefix, consumer: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, logger });
  events.start((jobId, type) => jobWebhooks.handle(jobId, type));

  const delivererConnection = bullmqConnection(config.redisUrl, { maxRetriesPerRequest: null });
  const worker = webhooks.startWorker({
    // Workers block on Redis: no per-request retry limit (BullMQ's rule), reconnecting while it is down.
    connection: delivererConnection.connection as ConnectionOptions,
    concurrency: w.concurrency,
    lockDurationMs: w.lockDurationMs,
    stalledIntervalMs: w.stalledIntervalMs,
  });
  worker.on('error', (err) => logger.warn({ err: err.message }, 'webhook delivery worker error'));
  worker.on('completed', () => deliveries.inc({ outcome: 'delivered' }));
  worker.on('failed', (job) => deliveries.inc({ outcome: job && job.attemptsMade < (job.opts.attempts ?? 1) ? 'retried' : 'gave_up' }));
  await worker.waitUntilReady();

  let sweeping: Promise<number> | undefined;
  const sweep = () =>
    (sweeping ??= jobWebhooks
      .sweep()
      .then((n) => {
        if (n) logger.debug({ jobs: n }, 'webhook sweep: job completions dealt with');
        return n;
      })
      .finally(() => (sweeping = undefined)));
  const periodic = async () => {
    try {
      // One delivery process sweeps per interval; the first sweep below runs regardless.
      if (await store.takeLease('webhook-sweeper', w.sweepIntervalMs)) await sweep();
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'webhook sweep failed; retrying next interval');
    }
  };
  const timer = setInterval(periodic, w.sweepIntervalMs);
  timer.unref();
  // Ends heard by nobody while this process was down.
  sweep().catch((err) => logger.warn({ err: (err as Error).message }, 'first webhook sweep failed; retrying next interval'));


  started = true;
  logger.info({ health_port: healthPort, concurrency: w.concurrency, allowed_hosts: [...w.allowedHosts.names, ...w.allowedHosts.addresses] }, 'webhook delivery process ready');
  return {
    jobWebhooks,
    sweep,
    healthPort,
    close: async () => {
      clearInterval(timer);
      await events.stop();
      health.closeAllConnections();
      await new Promise<void>((resolve) => health.close(() => resolve()));
      // In-flight attempts finish (each bounded by WEBHOOK_TIMEOUT_MS); queued ones wait for the next process.
      await worker.close();
      delivererConnection.release();
      await sweeping?.catch(() => {});
      await jobWebhooks.idle();
      await queue.close().catch(() => {});
      await store.close();
      await storage.close?.();
    },
  };
}
