/**
 * The worker's configuration: parsed and validated once at start-up. Nothing else reads process.env.
 * A bad value stops the process with "Invalid environment: <VAR> ...".
 *
 * The storage variables are the API's (S3_BUCKET, S3_ENDPOINT, ..., ARTIFACTS_DIR), with the same
 * meaning, so one environment file serves both apps.
 */
import { readFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, MODELS_ENV, QUEUE_ENV, envInt, envList, envRedisUrl, ownKeyPrefix, LOG_FORMAT, LOG_LEVEL, loadOrExit, parseEnv, redisOptionsFromUrl } from '@sdq/contracts';
import { STORAGE_ENV, storageConfigFromEnv, type StorageConfig } from '@sdq/storage/config';
import type { ExecutionProvider } from '@sdq/pipeline/types';

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'webgpu'] as const satisfies readonly ExecutionProvider[];

const EnvSchema = z.object({
  ...MODELS_ENV,
  ...QUEUE_ENV,
  /** Default ./models. */
  MODELS_DIR: z.string().min(1).default('./models'),
  /** Comma-separated engine ids to serve; default: every engine under MODELS_DIR. */
  ENGINES: envList.optional(),
  /**
   * Engines loaded at start, before the worker says ready: `all`, `none`, or a comma list. Default: the
   * default engine (DEFAULT_ENGINE) when this worker serves it, else its first engine. Any other engine
   * it serves is loaded when a job for it waits.
   */
  WORKER_PRELOAD: envList.optional(),
  /**
   * MB of engine weights (their graphs and external data, as on disk) one worker keeps loaded; loading
   * past it first unloads the least recently used engines that have no job running. Default: no bound.
   */
  WORKER_MODEL_MEMORY_MB: envInt(1, 16_777_216).optional(),
  /** Engines one worker keeps loaded at most (the least recently used idle one goes first). Default: no bound. */
  WORKER_MAX_LOADED_ENGINES: envInt(1, 1024).optional(),
  /**
   * Milliseconds a job waits for a worker that has its engine loaded before one that would have to load
   * it (and maybe unload another) takes it. A job whose engine no worker has loaded is loaded for at once.
   * Default 2000.
   */
  COLD_START_DELAY_MS: envInt(0, 600_000).default(2000),
  /** Pipelines with a LoRA set merged kept per engine for the next job with the same set. Default 2. */
  WORKER_LORA_SETS: envInt(1, 64).default(2),
  /** Jobs this process runs at once, across all its engines. Default 1 (one GPU = one worker). */
  WORKER_CONCURRENCY: envInt(1, 64).default(1),
  /**
   * Images one denoising batch may hold: compatible queued jobs (same engine, size, steps, sampler,
   * guidance scale, text-to-image) run as one batch, each job's images unchanged. The worker then takes
   * up to this many jobs at once. Default 1 (no batching).
   */
  WORKER_BATCH_SIZE: envInt(1, 64).default(1),
  /** Milliseconds a job that finds its engine idle waits for others to batch with. Default 25. */
  WORKER_BATCH_WINDOW_MS: envInt(0, 5000).default(25),
  /** onnxruntime execution providers in priority order, falling back along the list. Default cpu. */
  EXECUTION_PROVIDERS: envList.pipe(z.array(z.enum(EXECUTION_PROVIDERS)).min(1, 'must name at least one provider')).default(['cpu']),
  /** onnxruntime intra-op threads; default: the CPUs this process may use (affinity, cgroup quota). */
  ORT_THREADS: envInt(1, 1024).optional(),
  /**
   * The worker's memory bound in MB: engines at rest plus the runs in flight stay under it (a job's images
   * run in micro-batches that fit; a size whose one image cannot fit is refused by the API). Default: the
   * machine's memory or the container's cgroup limit, less a tenth (at least 512 MB).
   */
  WORKER_MEMORY_LIMIT_MB: envInt(64, 16_777_216).optional(),
  /** Where engines' measured memory models are kept between starts. Default <tmp>/sdq-memory. */
  WORKER_MEMORY_CACHE_DIR: z.string().min(1).optional(),
  ...STORAGE_ENV,
  /** Milliseconds SIGTERM waits for the running jobs before the worker exits anyway. Default 60000. */
  SHUTDOWN_GRACE_MS: envInt(0, 3_600_000).default(60_000),
  /**
   * Milliseconds a job's lock lasts without renewal (renewed every half). A SIGKILLed worker's job is
   * taken over once its lock expires and a stalled check runs. Default 30000.
   */
  WORKER_LOCK_DURATION_MS: envInt(500, 3_600_000).default(30_000),
  /** Milliseconds between stalled-job checks. Default 30000. */
  WORKER_STALLED_INTERVAL_MS: envInt(200, 3_600_000).default(30_000),
  /** Times a job may stall (its worker died) before it fails instead of being retried. Default 2. */
  WORKER_MAX_STALLED_COUNT: envInt(0, 100).default(2),
  /**
   * A safety checker folder (safety_checker/model.onnx, feature_extractor/preprocessor_config.json) for
   * every engine without one of its own (in its folder, or named by its sdq-engine.json). Default: none.
   */
  SAFETY_CHECKER_DIR: z.string().min(1).optional(),
  /**
   * The ffmpeg binary MP4 animations are written with (it needs libx264). Default `ffmpeg` on PATH; the
   * Docker images install Debian's. Without one the worker writes WebP and GIF only, and says so.
   */
  FFMPEG_PATH: z.string().min(1).default('ffmpeg'),
  /** Port of /healthz and /readyz; 0 = any free port. Default 3001. */
  HEALTH_PORT: envInt(0, 65535).default(3001),
  /** Default 0.0.0.0. */
  HEALTH_HOST: z.string().min(1).default('0.0.0.0'),
  /** Default info. */
  LOG_LEVEL,
  /** auto (default): readable lines on a terminal, JSON otherwise; json or pretty to choose. */
  LOG_FORMAT,
});

export type { StorageConfig };

export interface WorkerConfig {
  redisUrl: string;
  /** BullMQ's prefix. */
  queuePrefix: string;
  /** sdq's own keys' prefix: QUEUE_PREFIX, hash-tagged in a Redis Cluster. */
  keyPrefix: string;
  modelsDir: string;
  /** Undefined = every engine found. */
  engines?: string[];
  /** DEFAULT_ENGINE. */
  defaultEngine?: string;
  /** WORKER_PRELOAD: 'all', or the ids (none = []); undefined = the default engine. */
  preload?: 'all' | string[];
  /** WORKER_MODEL_MEMORY_MB in bytes; undefined = no bound. */
  modelMemoryBytes?: number;
  maxLoadedEngines?: number;
  coldStartDelayMs: number;
  /** LORA_DIR. */
  loraDir: string;
  /** EMBEDDINGS_DIR. */
  embeddingsDir: string;
  loraSets: number;
  concurrency: number;
  /** Images per denoising batch at most; 1 = no batching. */
  batchSize: number;
  batchWindowMs: number;
  providers: ExecutionProvider[];
  threads?: number;
  /** Bytes the worker may take in all (WORKER_MEMORY_LIMIT_MB). */
  memoryLimitBytes: number;
  memoryCacheDir: string;
  storage: StorageConfig;
  shutdownGraceMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  healthPort: number;
  healthHost: string;
  /** FFMPEG_PATH. */
  ffmpegPath: string;
  /** SAFETY_MODE: the default mode (off: a checker that fails to load does not stop its engine). */
  safetyMode: 'blur' | 'black' | 'refuse' | 'flag' | 'off';
  /** SAFETY_CHECKER_DIR. */
  safetyCheckerDir?: string;
  /** ENGINE_REFRESH_MS: how often a worker serving every engine looks for engines added or removed. */
  engineRefreshMs: number;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  logFormat: z.infer<typeof EnvSchema>['LOG_FORMAT'];
}

export { ConfigError };

/** Parses an environment (process.env in production, a plain object in tests). */
export function parseWorkerConfig(env: Record<string, string | undefined>): WorkerConfig {
  const e = parseEnv(EnvSchema, env);
  const storage = storageConfigFromEnv(e);
  if (e.ENGINES && e.ENGINES.length === 0) throw new ConfigError('Invalid environment: ENGINES names no engine (unset it to serve every engine)');
  if (e.WORKER_PRELOAD && e.WORKER_PRELOAD.length > 1 && e.WORKER_PRELOAD.some((id) => id === 'all' || id === 'none')) {
    throw new ConfigError('Invalid environment: WORKER_PRELOAD is all, none, or a comma list of engine ids, not a mix');
  }
  return {
    redisUrl: e.REDIS_URL,
    queuePrefix: e.QUEUE_PREFIX,
    keyPrefix: ownKeyPrefix(e.QUEUE_PREFIX, e.REDIS_URL),
    modelsDir: e.MODELS_DIR,
    engineRefreshMs: e.ENGINE_REFRESH_MS,
    engines: e.ENGINES,
    defaultEngine: e.DEFAULT_ENGINE,
    preload: e.WORKER_PRELOAD === undefined ? undefined : e.WORKER_PRELOAD.length === 1 && e.WORKER_PRELOAD[0] === 'all' ? 'all' : e.WORKER_PRELOAD.filter((id) => id !== 'none'),
    modelMemoryBytes: e.WORKER_MODEL_MEMORY_MB === undefined ? undefined : e.WORKER_MODEL_MEMORY_MB * 2 ** 20,
    maxLoadedEngines: e.WORKER_MAX_LOADED_ENGINES,
    coldStartDelayMs: e.COLD_START_DELAY_MS,
    loraDir: e.LORA_DIR ?? join(e.MODELS_DIR, 'loras'),
    embeddingsDir: e.EMBEDDINGS_DIR ?? join(e.MODELS_DIR, 'embeddings'),
    loraSets: e.WORKER_LORA_SETS,
    concurrency: e.WORKER_CONCURRENCY,
    batchSize: e.WORKER_BATCH_SIZE,
    batchWindowMs: e.WORKER_BATCH_WINDOW_MS,
    providers: e.EXECUTION_PROVIDERS,
    threads: e.ORT_THREADS,
    memoryLimitBytes: e.WORKER_MEMORY_LIMIT_MB !== undefined ? e.WORKER_MEMORY_LIMIT_MB * 2 ** 20 : defaultMemoryLimit(),
    memoryCacheDir: e.WORKER_MEMORY_CACHE_DIR ?? join(tmpdir(), 'sdq-memory'),
    storage,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    lockDurationMs: e.WORKER_LOCK_DURATION_MS,
    stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    healthPort: e.HEALTH_PORT,
    healthHost: e.HEALTH_HOST,
    ffmpegPath: e.FFMPEG_PATH,
    safetyMode: e.SAFETY_MODE,
    safetyCheckerDir: e.SAFETY_CHECKER_DIR,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
  };
}

/** What the machine, or the cgroup the process runs in (a container's limit), gives, less a tenth (at least 512 MB). */
export function defaultMemoryLimit(): number {
  let limit = totalmem();
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const value = Number(readFileSync(file, 'utf8').trim());
      // "max" (no limit) reads as NaN; cgroup v1 writes a huge number for none
      if (Number.isFinite(value) && value > 0) limit = Math.min(limit, value);
    } catch {
      // not in a cgroup that says
    }
  }
  return limit - Math.max(512 * 2 ** 20, Math.round(limit / 10));
}

/** The one place that reads process.env; exits with the message on a bad value. */
export function loadWorkerConfig(): WorkerConfig {
  return loadOrExit((env) => parseWorkerConfig(env));
}

export { redisOptionsFromUrl };

/** A Redis URL fit for a log line (any of its forms): the password replaced. */
export function redactUrl(redisUrl: string): string {
  return redisUrl.replace(/^([a-z+]+:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
}

/** Every variable the worker reads (docs/environment.md documents each). */
export const WORKER_ENV_NAMES = Object.keys(EnvSchema.shape);
