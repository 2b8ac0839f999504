/**
 * The worker's configuration: parsed and validated once at start-up. Nothing else reads process.env.
 * A bad value stops the process with "Invalid environment: <VAR> ...".
 *
 * The storage variables are the API's (S3_BUCKET, S3_ENDPOINT, ..., ARTIFACTS_DIR), with the same
 * meaning, so one environment file serves both apps.
 */
import { z } from 'zod';
import { DEFAULT_QUEUE_PREFIX } from '@sdq/contracts';
import type { ExecutionProvider } from '@sdq/pipeline/types';

const int = (min: number, max: number) => z.coerce.number({ message: 'must be a number' }).int('must be an integer').min(min).max(max);
const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const url = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.join(' or ')}//`);
const list = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'webgpu'] as const satisfies readonly ExecutionProvider[];

const EnvSchema = z.object({
  /** Default redis://127.0.0.1:6379. */
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /** Key prefix of every queue and record; must match the API's. Default "sdq". */
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'may hold only letters, digits, _ . -').default(DEFAULT_QUEUE_PREFIX),
  /** Default ./models. */
  MODELS_DIR: z.string().min(1).default('./models'),
  /** Comma-separated engine ids to serve; default: every engine under MODELS_DIR. */
  ENGINES: list.optional(),
  /** Jobs this process runs at once, across all its engines. Default 1 (one GPU = one worker). */
  WORKER_CONCURRENCY: int(1, 64).default(1),
  /** onnxruntime execution providers in priority order, falling back along the list. Default cpu. */
  EXECUTION_PROVIDERS: list.pipe(z.array(z.enum(EXECUTION_PROVIDERS)).min(1, 'must name at least one provider')).default(['cpu']),
  /** onnxruntime intra-op threads; default: onnxruntime's choice. */
  ORT_THREADS: int(1, 1024).optional(),
  S3_BUCKET: z.string().min(1).optional(),
  S3_ENDPOINT: url(['http:', 'https:']).optional(),
  /** Default us-east-1. */
  S3_REGION: z.string().min(1).default('us-east-1'),
  /** Default false. */
  S3_FORCE_PATH_STYLE: bool.default(false),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Local storage folder (when S3_BUCKET is unset); must be the API's. Default .data/artifacts. */
  ARTIFACTS_DIR: z.string().min(1).default('.data/artifacts'),
  /** Milliseconds SIGTERM waits for the running jobs before the worker exits anyway. Default 60000. */
  SHUTDOWN_GRACE_MS: int(0, 3_600_000).default(60_000),
  /**
   * Milliseconds a job's lock lasts without renewal (renewed every half). A SIGKILLed worker's job is
   * taken over once its lock expires and a stalled check runs. Default 30000.
   */
  WORKER_LOCK_DURATION_MS: int(500, 3_600_000).default(30_000),
  /** Milliseconds between stalled-job checks. Default 30000. */
  WORKER_STALLED_INTERVAL_MS: int(200, 3_600_000).default(30_000),
  /** Times a job may stall (its worker died) before it fails instead of being retried. Default 2. */
  WORKER_MAX_STALLED_COUNT: int(0, 100).default(2),
  /** Port of /healthz and /readyz; 0 = any free port. Default 3001. */
  HEALTH_PORT: int(0, 65535).default(3001),
  /** Default 0.0.0.0. */
  HEALTH_HOST: z.string().min(1).default('0.0.0.0'),
  /** Default info. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type StorageConfig =
  | { s3: { bucket: string; endpoint?: string; region: string; forcePathStyle: boolean; credentials?: { accessKeyId: string; secretAccessKey: string } } }
  | { local: { dir: string } };

export interface WorkerConfig {
  redisUrl: string;
  queuePrefix: string;
  modelsDir: string;
  /** Undefined = every engine found. */
  engines?: string[];
  concurrency: number;
  providers: ExecutionProvider[];
  threads?: number;
  storage: StorageConfig;
  shutdownGraceMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  healthPort: number;
  healthHost: string;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
}

export class ConfigError extends Error {}

const SECRET = /SECRET|TOKEN|PASSWORD|KEY_ID/;

/** Parses an environment (process.env in production, a plain object in tests). */
export function parseWorkerConfig(env: Record<string, string | undefined>): WorkerConfig {
  // Empty strings mean "unset", as in most .env files.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    const value = cleaned[name];
    const got = value === undefined ? '' : ` (got ${JSON.stringify(SECRET.test(name) ? '***' : value)})`;
    throw new ConfigError(`Invalid environment: ${name} ${issue.message}${got}`);
  }
  const e = parsed.data;
  if (e.S3_ENDPOINT && !e.S3_BUCKET) throw new ConfigError('Invalid environment: S3_BUCKET is required when S3_ENDPOINT is set');
  if (!!e.AWS_ACCESS_KEY_ID !== !!e.AWS_SECRET_ACCESS_KEY) {
    throw new ConfigError('Invalid environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together');
  }
  if (e.ENGINES && e.ENGINES.length === 0) throw new ConfigError('Invalid environment: ENGINES names no engine (unset it to serve every engine)');
  const credentials = e.AWS_ACCESS_KEY_ID ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY! } : undefined;
  return {
    redisUrl: e.REDIS_URL,
    queuePrefix: e.QUEUE_PREFIX,
    modelsDir: e.MODELS_DIR,
    engines: e.ENGINES,
    concurrency: e.WORKER_CONCURRENCY,
    providers: e.EXECUTION_PROVIDERS,
    threads: e.ORT_THREADS,
    storage: e.S3_BUCKET
      ? { s3: { bucket: e.S3_BUCKET, endpoint: e.S3_ENDPOINT, region: e.S3_REGION, forcePathStyle: e.S3_FORCE_PATH_STYLE, credentials } }
      : { local: { dir: e.ARTIFACTS_DIR } },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    lockDurationMs: e.WORKER_LOCK_DURATION_MS,
    stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    healthPort: e.HEALTH_PORT,
    healthHost: e.HEALTH_HOST,
    logLevel: e.LOG_LEVEL,
  };
}

/** The one place that reads process.env; exits with the message on a bad value. */
export function loadWorkerConfig(): WorkerConfig {
  try {
    return parseWorkerConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
}

/** ioredis options from a redis:// URL (BullMQ takes options rather than a URL). */
export function redisOptionsFromUrl(redisUrl: string): { host: string; port: number; username?: string; password?: string; db?: number; tls?: object } {
  const u = new URL(redisUrl);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isInteger(db) ? db : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

/** A Redis URL fit for a log line: the password replaced. */
export function redactUrl(redisUrl: string): string {
  const u = new URL(redisUrl);
  if (u.password) u.password = '***';
  return u.toString();
}
