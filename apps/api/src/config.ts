/**
 * The API's configuration: parsed and validated once at start-up. Nothing else reads process.env.
 * A bad value stops the process with "Invalid environment: <VAR> ...".
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { join } from 'node:path';
import { ConfigError, envBool, JOB_VIEW_ENV, MODELS_ENV, QUEUE_ENV, envInt, envUrl, ownKeyPrefix, LOG_FORMAT, LOG_LEVEL, loadOrExit, parseEnv, redisOptionsFromUrl } from '@sdq/contracts';
import { parseCredits } from '@sdq/credits/amounts';
import { STORAGE_ENV, storageConfigFromEnv, type S3Config } from '@sdq/storage/config';
import { WEBHOOK_ENV, type WebhookConfig, webhookConfigFromEnv } from '@sdq/webhooks/config';

const EnvSchema = z.object({
  /** Default 3000. */
  PORT: envInt(0, 65535).default(3000),
  /** Default 0.0.0.0. */
  HOST: z.string().min(1).default('0.0.0.0'),
  ...QUEUE_ENV,
  ...JOB_VIEW_ENV,
  /** Bearer token for /v1/admin; unset = admin API disabled. */
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Default ./models. */
  MODELS_DIR: z.string().min(1).default('./models'),
  /** The Hugging Face Hub `npx sdq models pull` reads (or a mirror speaking its API). Default https://huggingface.co. */
  HF_ENDPOINT: envUrl(['http:', 'https:']).default('https://huggingface.co'),
  /** Sent as a Bearer token on pulls: gated and private repos. Default none. */
  HF_TOKEN: z.string().min(1).optional(),
  /** More engine ids for engines, `alias=engine` comma-separated (e.g. stable-diffusion-xl-1024-v1-0=tiny-sdxl). Default none. */
  ENGINE_ALIASES: z
    .string()
    .regex(/^\s*([A-Za-z0-9][A-Za-z0-9._-]*\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)(,\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)*$/, 'must be alias=engine pairs, comma-separated (letters, digits, . _ -)')
    .transform((v) => v.split(',').map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]))
    .optional(),
  /**
   * Which engine serves each Stability v2beta service, `service=engine` comma-separated (services: core,
   * ultra, sd3.5-large, sd3.5-large-turbo, sd3.5-medium, sd3.5-flash, upscale-fast, inpaint, outpaint,
   * erase). Given ones must name engines; the rest default to the embedded engines where present.
   */
  V2BETA_ENGINES: z
    .string()
    .regex(/^\s*([a-z0-9.-]+\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)(,\s*[a-z0-9.-]+\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)*$/, 'must be service=engine pairs, comma-separated')
    .transform((v) => v.split(',').map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]))
    .optional(),
  /**
   * OpenAI image model names for engines, `model=engine` comma-separated (e.g. dall-e-3=sdxl-base). Engine
   * ids are models as they are; the embedded engines answer dall-e-2, dall-e-3 and gpt-image-1 by default.
   */
  OPENAI_MODELS: z
    .string()
    .regex(/^\s*([A-Za-z0-9][A-Za-z0-9._:-]*\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)(,\s*[A-Za-z0-9][A-Za-z0-9._:-]*\s*=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*)*$/, 'must be model=engine pairs, comma-separated')
    .transform((v) => v.split(',').map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]))
    .optional(),
  /**
   * Replicate model names for engines, `owner/name=engine` comma-separated (e.g. stability-ai/sdxl=sdxl-base).
   * Every generation engine is `sdq/<engine id>` too; by default stability-ai/stable-diffusion,
   * stability-ai/sdxl and stability-ai/stable-diffusion-3 name the first engine of each family.
   */
  REPLICATE_MODELS: z
    .string()
    .regex(/^\s*([A-Za-z0-9][\w.-]*\/[\w.-]+\s*=\s*[A-Za-z0-9][\w.-]*\s*)(,\s*[A-Za-z0-9][\w.-]*\/[\w.-]+\s*=\s*[A-Za-z0-9][\w.-]*\s*)*$/, 'must be owner/name=engine pairs, comma-separated')
    .transform((v) => v.split(',').map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]))
    .optional(),
  ...STORAGE_ENV,
  /** Seconds between sweeps of expired jobs. Default 60. */
  SWEEP_INTERVAL: envInt(1, 86_400).default(60),
  ...MODELS_ENV,
  /** true: a request for an engine no live worker serves is 503 engine_unavailable; false: it is queued for a worker to come. Default true. */
  REQUIRE_WORKER: z.enum(['true', 'false'], { error: () => 'must be true or false' }).default('true'),
  /** true: the web studio is served at /; false: / is 404 (an API-only deployment). Default true. */
  STUDIO: z.enum(['true', 'false'], { error: () => 'must be true or false' }).default('true'),
  /** Seconds a queued job may wait while no live worker serves its engine before it fails (engine_unavailable). Default 600. */
  UNSERVED_JOB_TIMEOUT: envInt(1, 30 * 86_400).default(600),
  /** Seconds a synchronous request waits for its job before answering 202. Default 120. */
  SYNC_WAIT: envInt(0, 3600).default(120),
  /** Milliseconds SIGTERM lets in-flight requests finish before their connections are cut. Default 10000. */
  API_SHUTDOWN_GRACE_MS: envInt(0, 600_000).default(10_000),
  /** Largest width x height accepted. Default 1048576. */
  MAX_PIXELS: envInt(16_384, 64 * 1024 * 1024).default(1_048_576),
  /**
   * The prompt blocklist: one term a line (a word or phrase, matched case-insensitively on word
   * boundaries, or /regex/i); read at start, on SIGHUP and every minute. Unset: no prompt is refused.
   */
  PROMPT_BLOCKLIST_FILE: z.string().min(1).optional(),
  /**
   * true: an image the safety checker filters is not charged (its price goes back when the job is
   * settled, as a `release` ledger entry with the reason content_filtered). Default false: charged as made.
   */
  SAFETY_REFUND: envBool.default(false),
  /** Most frames one animation may ask for (POST /v1/generation/{engine}/animation). Default 120. */
  MAX_ANIMATION_FRAMES: envInt(2, 100_000).default(120),
  /** Largest uploaded file in bytes. Default 10 MiB. */
  MAX_UPLOAD_BYTES: envInt(1024, 256 * 1024 * 1024).default(10 * 1024 * 1024),
  /** Milliseconds a client has to send a request's headers. Default 20000. */
  HTTP_HEADERS_TIMEOUT_MS: envInt(1000, 600_000).default(20_000),
  /** Milliseconds a client has to send a whole request (headers and body). Default 120000. */
  HTTP_REQUEST_TIMEOUT_MS: envInt(1000, 3_600_000).default(120_000),
  /**
   * Milliseconds an idle keep-alive connection stays open between requests. Default 65000: longer than
   * a load balancer's idle timeout (60 s on AWS), and far from the moment a client reuses a connection.
   * At Node's 5 s, a client's 4 s reuse window raced the server's close on a loaded machine (ECONNRESET).
   */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: envInt(100, 600_000).default(65_000),
  /** Milliseconds a multipart upload may send nothing before it is cut off (408). Default 15000. */
  UPLOAD_IDLE_TIMEOUT_MS: envInt(100, 600_000).default(15_000),
  /** Folder for uploads while they arrive (removed with each request). Default: the OS temp folder. */
  UPLOAD_TMP_DIR: z.string().min(1).optional(),
  /** Multipart uploads (and JSON bodies with base64 images) one API key may be sending at once; more are 429. Default 10. */
  MAX_UPLOADS_PER_KEY: envInt(1, 10_000).default(10),
  /**
   * Bytes of JSON bodies with base64 images (A1111's img2img, extra-single-image, png-info) this process
   * reads at once; a body that would pass it is 503 with Retry-After. Default 268435456 (256 MiB).
   */
  MAX_JSON_IMAGE_BYTES_IN_FLIGHT: envInt(1024 * 1024, 64 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
  /** Event streams (GET /v1/jobs/{id}/events) one API key may hold open; more are 429. Default 20. */
  MAX_EVENT_STREAMS_PER_KEY: envInt(1, 100_000).default(20),
  /** Event streams one account may hold open, all its keys together. Default 100. */
  MAX_EVENT_STREAMS_PER_ACCOUNT: envInt(1, 1_000_000).default(100),
  /** Event streams this process holds open in all; more are 503. Default: half its open-file limit, at most 10000. */
  MAX_EVENT_STREAMS: envInt(1, 10_000_000).optional(),
  /** Default info. */
  LOG_LEVEL,
  /** auto (default): readable lines on a terminal, JSON otherwise; json or pretty to choose. */
  LOG_FORMAT,
  /** Operator price file applied over the shipped price table; unset = shipped prices only. */
  PRICES_FILE: z.string().min(1).optional(),
  /** Credits a new account starts with when its creator names no amount. Default 25. */
  /**
   * Priority tiers, `name=priority` comma-separated, 1 the highest: each account's jobs are queued at its
   * tier's BullMQ priority, so a higher tier's job is picked before a lower tier's queued earlier.
   */
  PRIORITY_TIERS: z
    .string()
    .regex(/^\s*[a-z][a-z0-9_-]{0,31}\s*=\s*[1-9]\d{0,6}\s*(,\s*[a-z][a-z0-9_-]{0,31}\s*=\s*[1-9]\d{0,6}\s*)*$/, 'must be tier=priority pairs, comma-separated (priority 1 the highest, at most 2097152)')
    .transform((v) => new Map(v.split(',').map((pair) => pair.split('=').map((s) => s.trim())).map(([name, priority]) => [name, Number(priority)] as const)))
    .refine((tiers) => [...tiers.values()].every((p) => p <= 2_097_152), 'priorities must be at most 2097152')
    .default(new Map([['priority', 1], ['standard', 5], ['batch', 10]])),
  /** The tier of accounts created without one. Default standard. */
  DEFAULT_TIER: z.string().default('standard'),
  STARTING_CREDITS: z.string().regex(/^\d+(\.\d{1,6})?$/, 'must be a number of credits >= 0 with at most 6 decimal places').default('25'),
  /** Requests to the generation endpoints per API key per window. Default 150. */
  RATE_LIMIT: envInt(1, 1_000_000).default(150),
  /** The rate limit's sliding window, ms. Default 10000. */
  RATE_LIMIT_WINDOW_MS: envInt(100, 3_600_000).default(10_000),
  /** Jobs an account may have queued or running at once; 0 = no limit. Default 10. */
  MAX_ACTIVE_JOBS: envInt(0, 1_000_000).default(10),
  /** Seconds before the hold of a job that cannot be found is released (its request may still be adding it). Default 300. */
  HOLD_GRACE: envInt(1, 86_400).default(300),
  ...WEBHOOK_ENV,
});

export type Env = z.input<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  /** PUBLIC_URL, else http://localhost:<port>; with PORT=0 the port is filled in once the server listens. */
  publicUrl: string;
  /** True when publicUrl was derived from PORT rather than given. */
  publicUrlFromPort: boolean;
  redisUrl: string;
  /** BullMQ's prefix. */
  queuePrefix: string;
  /** sdq's own keys' prefix: QUEUE_PREFIX, hash-tagged in a Redis Cluster. */
  keyPrefix: string;
  redisTimeoutMs: number;
  adminToken?: string;
  modelsDir: string;
  /** Where models are pulled from (HF_ENDPOINT, HF_TOKEN). */
  hub: { endpoint: string; token?: string };
  /** ENGINE_ALIASES as [alias, engine] pairs. */
  engineAliases: [string, string][];
  /** OPENAI_MODELS as [model, engine] pairs. */
  openaiModels: [string, string][];
  /** REPLICATE_MODELS as [owner/name, engine] pairs. */
  replicateModels: [string, string][];
  /** V2BETA_ENGINES as [service, engine] pairs. */
  v2betaEngines: [string, string][];
  storage:
    | { s3: S3Config }
    | { local: { dir: string; secret: string } };
  artifactUrlExpiry: number;
  resultRetention: number;
  sweepInterval: number;
  /** ENGINE_REFRESH_MS. */
  engineRefreshMs: number;
  /** LORA_DIR, EMBEDDINGS_DIR. */
  loraDir: string;
  embeddingsDir: string;
  /** DEFAULT_ENGINE: what a request that names no engine gets where a dialect has a default (A1111). */
  defaultEngine?: string;
  syncWait: number;
  shutdownGraceMs: number;
  requireWorker: boolean;
  /** Serve the web studio at /. */
  studio: boolean;
  unservedJobTimeout: number;
  maxPixels: number;
  maxAnimationFrames: number;
  /** PROMPT_BLOCKLIST_FILE. */
  promptBlocklistFile?: string;
  /** SAFETY_REFUND: filtered images are given back at settle. */
  safetyRefund: boolean;
  /** SAFETY_MODE: the mode of accounts without their own. */
  safetyMode: 'blur' | 'black' | 'refuse' | 'flag' | 'off';
  maxUploadBytes: number;
  http: {
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    uploadIdleTimeoutMs: number;
    maxUploadsPerKey: number;
    uploadTmpDir?: string;
    maxJsonImageBytesInFlight: number;
    eventStreams: { perKey: number; perAccount: number; total: number };
  };
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  logFormat: z.infer<typeof EnvSchema>['LOG_FORMAT'];
  credits: {
    pricesFile?: string;
    /** Micro-credits. */
    startingCredits: number;
    /** tier -> BullMQ priority (1 the highest). */
    tiers: Map<string, number>;
    defaultTier: string;
    rateLimit: number;
    rateLimitWindowMs: number;
    maxActiveJobs: number;
    holdGraceMs: number;
  };
  webhooks: WebhookConfig;
}

export { ConfigError };

/** Parses an environment (process.env in production, a plain object in tests). */
export function parseConfig(env: Record<string, string | undefined>, randomSecret: () => string = defaultSecret): Config {
  const e = parseEnv(EnvSchema, env);
  if (!e.PRIORITY_TIERS.has(e.DEFAULT_TIER)) {
    throw new ConfigError(`Invalid environment: DEFAULT_TIER ${e.DEFAULT_TIER} is not one of PRIORITY_TIERS (${[...e.PRIORITY_TIERS.keys()].join(', ')})`);
  }
  const storage = storageConfigFromEnv(e);
  return {
    port: e.PORT,
    host: e.HOST,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, ''),
    publicUrlFromPort: !e.PUBLIC_URL,
    redisUrl: e.REDIS_URL,
    queuePrefix: e.QUEUE_PREFIX,
    keyPrefix: ownKeyPrefix(e.QUEUE_PREFIX, e.REDIS_URL),
    redisTimeoutMs: e.REDIS_TIMEOUT_MS,
    adminToken: e.ADMIN_TOKEN,
    modelsDir: e.MODELS_DIR,
    hub: { endpoint: e.HF_ENDPOINT.replace(/\/+$/, ''), token: e.HF_TOKEN },
    engineAliases: e.ENGINE_ALIASES ?? [],
    v2betaEngines: e.V2BETA_ENGINES ?? [],
    openaiModels: e.OPENAI_MODELS ?? [],
    replicateModels: e.REPLICATE_MODELS ?? [],
    storage: 's3' in storage ? storage : { local: { ...storage.local, secret: e.ARTIFACT_URL_SECRET ?? randomSecret() } },
    artifactUrlExpiry: e.ARTIFACT_URL_EXPIRY,
    resultRetention: e.RESULT_RETENTION,
    sweepInterval: e.SWEEP_INTERVAL,
    engineRefreshMs: e.ENGINE_REFRESH_MS,
    loraDir: e.LORA_DIR ?? join(e.MODELS_DIR, 'loras'),
    embeddingsDir: e.EMBEDDINGS_DIR ?? join(e.MODELS_DIR, 'embeddings'),
    defaultEngine: e.DEFAULT_ENGINE,
    syncWait: e.SYNC_WAIT,
    shutdownGraceMs: e.API_SHUTDOWN_GRACE_MS,
    requireWorker: e.REQUIRE_WORKER === 'true',
    studio: e.STUDIO === 'true',
    unservedJobTimeout: e.UNSERVED_JOB_TIMEOUT,
    maxPixels: e.MAX_PIXELS,
    maxAnimationFrames: e.MAX_ANIMATION_FRAMES,
    promptBlocklistFile: e.PROMPT_BLOCKLIST_FILE,
    safetyMode: e.SAFETY_MODE,
    safetyRefund: e.SAFETY_REFUND,
    maxUploadBytes: e.MAX_UPLOAD_BYTES,
    http: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      uploadIdleTimeoutMs: e.UPLOAD_IDLE_TIMEOUT_MS,
      maxUploadsPerKey: e.MAX_UPLOADS_PER_KEY,
      uploadTmpDir: e.UPLOAD_TMP_DIR,
      maxJsonImageBytesInFlight: e.MAX_JSON_IMAGE_BYTES_IN_FLIGHT,
      eventStreams: {
        perKey: e.MAX_EVENT_STREAMS_PER_KEY,
        perAccount: e.MAX_EVENT_STREAMS_PER_ACCOUNT,
        // below the file limit, so that /healthz and everyone else can still connect
        total: e.MAX_EVENT_STREAMS ?? Math.min(10_000, Math.max(64, Math.floor((openFileLimit() ?? 20_000) / 2))),
      },
    },
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    credits: {
      pricesFile: e.PRICES_FILE,
      startingCredits: parseCredits(e.STARTING_CREDITS, { allowZero: true }),
      tiers: e.PRIORITY_TIERS,
      defaultTier: e.DEFAULT_TIER,
      rateLimit: e.RATE_LIMIT,
      rateLimitWindowMs: e.RATE_LIMIT_WINDOW_MS,
      maxActiveJobs: e.MAX_ACTIVE_JOBS,
      holdGraceMs: e.HOLD_GRACE * 1000,
    },
    webhooks: webhookConfigFromEnv(e),
  };
}

function defaultSecret(): string {
  return crypto.randomUUID() + crypto.randomUUID();
}

/** The one place that reads process.env; exits with the message on a bad value. */
export function loadConfig(): Config {
  return loadOrExit((env) => parseConfig(env));
}

export { redisOptionsFromUrl };

/** Every variable the API reads (docs/environment.md documents each). */
export const API_ENV_NAMES = Object.keys(EnvSchema.shape);

/** The soft limit of open files of this process (Linux), or undefined where it cannot be read. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
