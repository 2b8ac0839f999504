/**
 * Environment parsing shared by every process: the value helpers, and one error format,
 * "Invalid environment: <VAR> <problem> (got <value>)", with secrets masked. Each app's config module
 * declares its own variables with these and is the only place that reads process.env.
 */
import { z } from 'zod';

export class ConfigError extends Error {}

export const envInt = (min: number, max: number) =>
  z.coerce.number({ message: 'must be a number' }).int('must be an integer').min(min).max(max);

export const envBool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const envUrl = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.join(' or ')}//`);

export const envList = z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));

export const LOG_LEVEL = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

/** What the API and the worker read alike about MODELS_DIR while they run. */
export const MODELS_ENV = {
  /** Milliseconds between looks at MODELS_DIR for engines added or removed while the process runs. Default 10000. */
  ENGINE_REFRESH_MS: envInt(100, 600_000).default(10_000),
  /**
   * The default engine: what an A1111 request without a checkpoint gets, and what a worker loads at
   * start (WORKER_PRELOAD's default). Default: the first generation engine under MODELS_DIR.
   */
  DEFAULT_ENGINE: z.string().min(1).optional(),
  /** The folder of LoRA files (.safetensors, named by file stem); never an engine. Default <MODELS_DIR>/loras. */
  LORA_DIR: z.string().min(1).optional(),
  /** The folder of textual-inversion embeddings (.safetensors; the file stem is the trigger word). Default <MODELS_DIR>/embeddings. */
  EMBEDDINGS_DIR: z.string().min(1).optional(),
  /**
   * What becomes of an image the safety checker flags, for accounts without a mode of their own: blur
   * (default), black, refuse, flag or off. The API records it on each job; a worker whose checker fails
   * to load serves the engine anyway only when it is off (else the engine stays unserved: fail closed).
   */
  SAFETY_MODE: z.enum(['blur', 'black', 'refuse', 'flag', 'off']).default('blur'),
};

/**
 * What the API and the webhook delivery process read alike, since both answer for a job (the API's job
 * object, the delivery's body): one definition, spread into both environment schemas.
 */
export const JOB_VIEW_ENV = {
  /** Base URL clients reach the API at: job urls, local artifact URLs. Default http://localhost:PORT. */
  PUBLIC_URL: envUrl(['http:', 'https:']).optional(),
  /** Milliseconds to wait for Redis (the API then answers 503). Default 2000. */
  REDIS_TIMEOUT_MS: envInt(100, 60_000).default(2000),
  /** HMAC key of local artifact URLs; the same in both, or the URLs in deliveries do not open. Default: a random key per API process. */
  ARTIFACT_URL_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Seconds an artifact URL stays valid (deliveries sign for at least the retention). Default 3600. */
  ARTIFACT_URL_EXPIRY: envInt(1, 604_800).default(3600),
  /** Seconds a job and its results are kept. Default 86400 (24 h). */
  RESULT_RETENTION: envInt(1, 365 * 86_400).default(86_400),
};

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|KEY_ID/;

/** Validates an environment against a schema; empty strings mean "unset", as in most .env files. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const name = String(issue.path[0]);
  const value = cleaned[name];
  const got = value === undefined ? '' : ` (got ${JSON.stringify(SECRET_NAME.test(name) ? '***' : value)})`;
  throw new ConfigError(`Invalid environment: ${name} ${issue.message}${got}`);
}

/** Runs a config parser on process.env; on a bad value prints the message and exits 1. */
export function loadOrExit<T>(parse: (env: Record<string, string | undefined>) => T): T {
  try {
    return parse(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
}

/** ioredis options from a redis:// URL, for BullMQ, which takes options rather than a URL. */
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
