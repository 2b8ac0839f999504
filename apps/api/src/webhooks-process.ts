/**
 * The webhook delivery process: hears every engine queue's job events and queues their webhooks
 * (JobWebhooks), sweeps for job ends it did not hear, and runs the delivery queue's worker. It builds the
 * job object with the API's own code, so a delivery carries exactly what GET /v1/jobs/{id} answers (with
 * local storage, artifact URLs are signed with ARTIFACT_URL_SECRET: the API's must be the same).
 *
 * Deliveries never run in the generation worker; several delivery processes may run side by side.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { createCore } from './app';
import { type Config, ConfigError, redisOptionsFromUrl } from './config';
import { portInUseMessage } from '@sdq/contracts';
import { JobWebhooks } from './job-webhooks.service';
import { healthRoutes } from './routes';

export interface RunningWebhookProcess {
  jobWebhooks: JobWebhooks;
  /** Port of /healthz and /readyz. */
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
export function webhookUrlExpiry(config: Pick<Config, 'artifactUrlExpiry' | 'resultRetention'>): number {
  return Math.max(config.artifactUrlExpiry, Math.min(config.resultRetention, MAX_URL_EXPIRY_SECONDS));
}

export async function startWebhookProcess(config: Config, logger: Logger): Promise<RunningWebhookProcess> {
  const core = createCore({ ...config, artifactUrlExpiry: webhookUrlExpiry(config) }, logger);
  const { store, queue, jobs, webhooks, storage, engines } = core;
  store.redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  const jobWebhooks = new JobWebhooks({ store, jobs, webhooks, logger });
  queue.onEvent((jobId, event) => jobWebhooks.handle(jobId, event));
  await queue.eventsReady();

  const w = config.webhooks;
  const worker = webhooks.startWorker({
    // Workers block on Redis: no per-request retry limit (BullMQ's rule), reconnecting while it is down.
    connection: { ...redisOptionsFromUrl(config.redisUrl), maxRetriesPerRequest: null },
    concurrency: w.concurrency,
    lockDurationMs: w.lockDurationMs,
    stalledIntervalMs: w.stalledIntervalMs,
  });
  worker.on('error', (err) => logger.warn({ err: err.message }, 'webhook delivery worker error'));
  // deliveries by outcome: delivered, retried (an attempt failed, another comes), gave_up (the last failed)
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sdq_webhooks_' });
  const deliveries = new Counter({ name: 'sdq_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome', labelNames: ['outcome'], registers: [registry] });
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

  // The API's own /healthz and /readyz (Redis and storage reachable), on a port of this process's own.
  const health: Server = express()
    .get('/metrics', (_req, res, next) => {
      registry.metrics().then((text) => res.type(registry.contentType).send(text), next);
    })
    .use(healthRoutes(store, storage))
    .listen(w.healthPort, w.healthHost);
  await new Promise<void>((resolve, reject) => {
    health.once('listening', resolve);
    health.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new ConfigError(portInUseMessage('WEBHOOK_HEALTH_PORT', w.healthPort)) : err),
    );
  });
  const healthPort = (health.address() as AddressInfo).port;

  logger.info({ health_port: healthPort, engines: [...engines.keys()], concurrency: w.concurrency, allowed_hosts: [...w.allowedHosts.names, ...w.allowedHosts.addresses] }, 'webhook delivery process ready');
  return {
    jobWebhooks,
    sweep,
    healthPort,
    close: async () => {
      clearInterval(timer);
      health.closeAllConnections();
      await new Promise<void>((resolve) => health.close(() => resolve()));
      // In-flight attempts finish (each bounded by WEBHOOK_TIMEOUT_MS); queued ones wait for the next process.
      await worker.close();
      await sweeping?.catch(() => {});
      await jobWebhooks.idle();
      await queue.close().catch(() => {});
      await store.close();
      await storage.close?.();
    },
  };
}
