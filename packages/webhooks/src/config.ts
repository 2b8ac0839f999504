/**
 * The webhook variables, shared by the API (which checks webhook URLs and queues deliveries) and the
 * delivery process (which sends them), so one environment file serves both.
 */
import { z } from 'zod';
import { envInt } from '@sdq/contracts';
import { type AllowList, parseAllowList } from './ssrf';
import { RETRY_DELAYS_MS } from './retry-policy';
import { Webhooks, type WebhooksOptions } from './webhooks';

export const WEBHOOK_ENV = {
  /** Host names and IPs webhooks may call although they resolve to refused (private, loopback, ...) addresses. Default none. */
  WEBHOOK_ALLOWED_HOSTS: z.string().transform((value, ctx) => {
    try {
      return parseAllowList(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  }).optional(),
  /** Milliseconds one delivery attempt may take. Default 10000. */
  WEBHOOK_TIMEOUT_MS: envInt(100, 60_000).default(10_000),
  /** Waits before attempts 2, 3, ... in ms, comma-separated. Default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h. */
  WEBHOOK_RETRY_DELAYS_MS: z
    .string()
    .regex(/^\s*\d+(\s*,\s*\d+){0,19}\s*$/, 'must be up to 20 comma-separated whole numbers of milliseconds')
    .transform((v) => v.split(',').map((d) => Number(d.trim())))
    .refine((delays) => delays.every((d) => d <= 7 * 86_400_000), 'must be at most 7 days each')
    .optional(),
  /** Seconds a rotated webhook secret keeps signing. Default 86400 (24 h). */
  WEBHOOK_SECRET_GRACE: envInt(0, 30 * 86_400).default(86_400),
  /** Deliveries in flight at once per delivery process. Default 16. */
  WEBHOOK_CONCURRENCY: envInt(1, 1000).default(16),
  /** Seconds between the delivery process's sweeps for finished jobs whose completion was not sent. Default 30. */
  WEBHOOK_SWEEP_INTERVAL: envInt(1, 86_400).default(30),
  /** A delivery's lock without renewal (ms): a killed delivery process's attempts run again after it. Default 30000. */
  WEBHOOK_LOCK_DURATION_MS: envInt(500, 600_000).default(30_000),
  /** How often stalled deliveries are looked for (ms). Default 30000. */
  WEBHOOK_STALLED_INTERVAL_MS: envInt(500, 600_000).default(30_000),
  /** Port of the delivery process's /healthz, /readyz and /metrics; 0 = any free port. Default 3002. */
  WEBHOOK_HEALTH_PORT: envInt(0, 65535).default(3002),
  /** Default 0.0.0.0. */
  WEBHOOK_HEALTH_HOST: z.string().min(1).default('0.0.0.0'),
};

const WebhookEnvSchema = z.object(WEBHOOK_ENV);
export type WebhookEnv = z.infer<typeof WebhookEnvSchema>;

export interface WebhookConfig {
  allowedHosts: AllowList;
  timeoutMs: number;
  retryDelaysMs: readonly number[];
  secretGraceMs: number;
  concurrency: number;
  sweepIntervalMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  healthPort: number;
  healthHost: string;
}

export function webhookConfigFromEnv(e: WebhookEnv): WebhookConfig {
  return {
    allowedHosts: e.WEBHOOK_ALLOWED_HOSTS ?? parseAllowList(undefined),
    timeoutMs: e.WEBHOOK_TIMEOUT_MS,
    retryDelaysMs: e.WEBHOOK_RETRY_DELAYS_MS ?? RETRY_DELAYS_MS,
    secretGraceMs: e.WEBHOOK_SECRET_GRACE * 1000,
    concurrency: e.WEBHOOK_CONCURRENCY,
    sweepIntervalMs: e.WEBHOOK_SWEEP_INTERVAL * 1000,
    lockDurationMs: e.WEBHOOK_LOCK_DURATION_MS,
    stalledIntervalMs: e.WEBHOOK_STALLED_INTERVAL_MS,
    healthPort: e.WEBHOOK_HEALTH_PORT,
    healthHost: e.WEBHOOK_HEALTH_HOST,
  };
}

/** The Webhooks of a process configured from these variables (the API and the delivery process alike). */
export function webhooksFromConfig(config: WebhookConfig, parts: Pick<WebhooksOptions, 'redis' | 'prefix' | 'queue' | 'logger'>): Webhooks {
  return new Webhooks({ ...parts, allowedHosts: config.allowedHosts, secretGraceMs: config.secretGraceMs, timeoutMs: config.timeoutMs, retryDelaysMs: config.retryDelaysMs });
}
