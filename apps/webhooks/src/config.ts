/**
 * The delivery process's configuration: parsed and validated once at start-up, from the same variables
 * as the API's (one environment file serves both). Nothing else here reads process.env.
 */
import { z } from 'zod';
import { ConfigError, QUEUE_ENV, envInt, envRedisUrl, envUrl, ownKeyPrefix, LOG_FORMAT, LOG_LEVEL, loadOrExit, parseEnv } from '@sdq/contracts';
import { STORAGE_ENV, storageConfigFromEnv, type S3Config } from '@sdq/storage/config';
import { WEBHOOK_ENV, type WebhookConfig, webhookConfigFromEnv } from '@sdq/webhooks/config';

const EnvSchema = z.object({
  /** The API's port: the public URL's default (http://localhost:PORT). Default 3000. */
  PORT: envInt(0, 65535).default(3000),
  /** Base URL clients reach the API at: job urls in delivery bodies, local artifact URLs. */
  PUBLIC_URL: envUrl(['http:', 'https:']).optional(),
  ...QUEUE_ENV,
  /** Milliseconds to wait for Redis. Default 2000. */
  REDIS_TIMEOUT_MS: envInt(100, 60_000).default(2000),
  ...STORAGE_ENV,
  /** HMAC key of local artifact URLs: the API's own, or the URLs in deliveries do not open. */
  ARTIFACT_URL_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Seconds an artifact URL stays valid (deliveries sign for at least the retention, see webhookUrlExpiry). Default 3600. */
  ARTIFACT_URL_EXPIRY: envInt(1, 604_800).default(3600),
  /** Seconds a job and its results are kept. Default 86400 (24 h). */
  RESULT_RETENTION: envInt(1, 365 * 86_400).default(86_400),
  /** Milliseconds between looks for engines an API process registered since. Default 5000. */
  WEBHOOK_ENGINE_REFRESH_MS: envInt(100, 600_000).default(5000),
  LOG_LEVEL,
  LOG_FORMAT,
  ...WEBHOOK_ENV,
});

export interface DeliveryConfig {
  publicUrl: string;
  redisUrl: string;
  /** BullMQ's prefix. */
  queuePrefix: string;
  /** sdq's own keys' prefix: QUEUE_PREFIX, hash-tagged in a Redis Cluster. */
  keyPrefix: string;
  redisTimeoutMs: number;
  storage: { s3: S3Config } | { local: { dir: string; secret: string } };
  artifactUrlExpiry: number;
  resultRetention: number;
  engineRefreshMs: number;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  logFormat: z.infer<typeof EnvSchema>['LOG_FORMAT'];
  webhooks: WebhookConfig;
}

export { ConfigError };

export function parseConfig(env: Record<string, string | undefined>): DeliveryConfig {
  const e = parseEnv(EnvSchema, env);
  const storage = storageConfigFromEnv(e);
  return {
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, ''),
    redisUrl: e.REDIS_URL,
    queuePrefix: e.QUEUE_PREFIX,
    keyPrefix: ownKeyPrefix(e.QUEUE_PREFIX, e.REDIS_URL),
    redisTimeoutMs: e.REDIS_TIMEOUT_MS,
    // Without the API's secret, local artifact URLs in deliveries would not open: a per-process random
    // key keeps start-up working (as the API's own default does), and docs/environment.md says to share one.
    storage: 's3' in storage ? storage : { local: { ...storage.local, secret: e.ARTIFACT_URL_SECRET ?? crypto.randomUUID() + crypto.randomUUID() } },
    artifactUrlExpiry: e.ARTIFACT_URL_EXPIRY,
    resultRetention: e.RESULT_RETENTION,
    engineRefreshMs: e.WEBHOOK_ENGINE_REFRESH_MS,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    webhooks: webhookConfigFromEnv(e),
  };
}

/** The one place that reads process.env; exits with the message on a bad value. */
export function loadConfig(): DeliveryConfig {
  return loadOrExit((env) => parseConfig(env));
}
