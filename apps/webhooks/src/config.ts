/**
 * The delivery process's configuration: parsed and validated once at start-up, from the same variables
 * as the API's (one environment file serves both). Nothing else here reads process.env.
 */
import { z } from 'zod';
import { ConfigError, JOB_VIEW_ENV, QUEUE_ENV, envInt, ownKeyPrefix, LOG_FORMAT, LOG_LEVEL, loadOrExit, parseEnv } from '@sdq/contracts';
import { STORAGE_ENV, storageConfigFromEnv, type S3Config } from '@sdq/storage/config';
import { WEBHOOK_ENV, type WebhookConfig, webhookConfigFromEnv } from '@sdq/webhooks/config';

const EnvSchema = z.object({
  /** The API's port: the public URL's default (http://localhost:PORT). Default 3000. */
  PORT: envInt(0, 65535).default(3000),
  ...QUEUE_ENV,
  ...JOB_VIEW_ENV,
  ...STORAGE_ENV,
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
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    webhooks: webhookConfigFromEnv(e),
  };
}

/** The one place that reads process.env; exits with the message on a bad value. */
export function loadConfig(): DeliveryConfig {
  return loadOrExit((env) => parseConfig(env));
}
