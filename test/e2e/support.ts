/**
 * The whole service for end-to-end tests: the API started in-process on a free loopback port, workers
 * in-process (startWorker) or as child processes (for SIGKILL), the real models under models/, real
 * Redis (test/support/redis.ts) and a real S3 protocol server (s3rver) or a local artifact folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { pino } from 'pino';
import { type RunningServer, startServer } from '../../apps/api/src/app';
import { parseConfig } from '../../apps/api/src/config';
import { parseWorkerConfig } from '../../apps/worker/src/config';
import { type RunningWorker, startWorker } from '../../apps/worker/src/worker';
import { startTestRedis, type TestRedis } from '../support/redis';
import type { TestS3 } from '../support/s3';

export const ROOT = resolve(import.meta.dirname, '../..');
export const MODELS_DIR = join(ROOT, 'models');
export const ADMIN_TOKEN = 'e2e-admin-token-0123456789';
/** The API's local artifact URL key; processes that sign artifact URLs too (webhook delivery) need it. */
export const ARTIFACT_URL_SECRET = 'e2e-artifact-secret-0123456789';
const LOG_LEVEL = process.env.TEST_LOG_LEVEL ?? 'silent';

export interface Service {
  url: string;
  server: RunningServer;
  /** The environment both apps share (Redis, prefix, storage). */
  env: Record<string, string>;
  /** A new account's API key. */
  apiKey(name?: string): Promise<string>;
  close(): Promise<void>;
}

/** Environment for storage: S3 (s3rver) or a fresh local folder. */
export function storageEnv(s3?: TestS3): { env: Record<string, string>; cleanup(): void } {
  if (s3) {
    return {
      env: {
        S3_BUCKET: s3.bucket,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      },
      cleanup: () => {},
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'sdq-e2e-artifacts-'));
  return { env: { ARTIFACTS_DIR: dir }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function startService(redis: TestRedis, opts: { s3?: TestS3; env?: Record<string, string>; logger?: pino.Logger } = {}): Promise<Service> {
  const storage = storageEnv(opts.s3);
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR, ...storage.env, ...opts.env };
  // PORT=0: the API fills its public URL (job URLs, local artifact URLs) in once it listens.
  const config = parseConfig({
    ...env,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN,
    ARTIFACT_URL_SECRET,
    SYNC_WAIT: '30',
    API_SHUTDOWN_GRACE_MS: '2000',
    // The default 2 s: a loaded CI machine can take longer than 0.5 s to answer, which is not an outage.
    REDIS_TIMEOUT_MS: '2000',
    LOG_LEVEL,
  });
  const server = await startServer(config, { logger: opts.logger ?? pino({ level: LOG_LEVEL }) });
  return {
    url: server.url,
    server,
    env,
    apiKey: async (name = 'e2e') => {
      const res = await fetch(`${server.url}/v1/admin/accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, credits: 10 }),
      });
      if (res.status !== 201) throw new Error(`account creation failed: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { api_key: string }).api_key;
    },
    close: async () => {
      await server.close();
      storage.cleanup();
    },
  };
}

/** A worker in this process; `jobs` lists the job ids it started, in order. */
export interface TestWorker extends RunningWorker {
  jobs: string[];
  /** Job ids it ran to success, once per run (a job run again after a fault appears twice). */
  succeeded: string[];
  /** What it logged about its engines (loaded, unloaded, not served), in order. */
  engineLog: Record<string, unknown>[];
}

/** Fast stalled-job recovery, so a killed worker's job is taken over within a few seconds. */
const FAST_RECOVERY = { WORKER_LOCK_DURATION_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000' };

export async function startTestWorker(service: Pick<Service, 'env'>, env: Record<string, string> = {}): Promise<TestWorker> {
  const config = parseWorkerConfig({ ...service.env, HEALTH_PORT: '0', HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'info', ...FAST_RECOVERY, ...env });
  const jobs: string[] = [];
  const succeeded: string[] = [];
  const engineLog: Record<string, unknown>[] = [];
  // The worker's own log lines tell which worker ran which job.
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        const entry = JSON.parse(line) as { msg?: string; job_id?: string };
        if (entry.msg?.startsWith('engine ')) engineLog.push(entry);
        if (entry.msg === 'job started' && entry.job_id) jobs.push(entry.job_id);
        if (entry.msg === 'job succeeded' && entry.job_id) succeeded.push(entry.job_id);
        if (LOG_LEVEL !== 'silent') process.stderr.write(`${line}\n`);
      }
      done();
    },
  });
  const worker = await startWorker(config, pino({ level: 'info' }, sink));
  return Object.assign(worker, { jobs, succeeded, engineLog });
}

export interface ChildProcessHandle {
  child: ChildProcess;
  /** Lines it wrote (JSON logs and anything on stderr). */
  lines: string[];
  /** Resolves once it logs that it is ready. */
  ready: Promise<void>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/** A service process as a child (its `npm run start:*` entry), ready once it logs `readyMessage`. */
export function spawnEntry(entry: string, env: Record<string, string>, readyMessage: string): ChildProcessHandle {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let onReady: () => void;
  let onExit: (err: Error) => void;
  const ready = new Promise<void>((res, rej) => ((onReady = res), (onExit = rej)));
  // Handled by whoever awaits it; an exit after readiness must not be an unhandled rejection.
  ready.catch(() => {});
  let buffered = '';
  child.stdout!.on('data', (data: Buffer) => {
    buffered += data.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      if (line.includes(`"${readyMessage}"`)) onReady();
    }
  });
  child.stderr!.on('data', (data: Buffer) => lines.push(data.toString()));
  child.on('exit', (code) => onExit(new Error(`${entry} exited with ${code} before it was ready:\n${lines.join('\n')}`)));
  return {
    child,
    lines,
    ready,
    kill: (signal) =>
      new Promise((res) => {
        if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
        child.once('exit', (code) => res(code));
        child.kill(signal);
      }),
  };
}

/** A worker as a child process (`npm run start:worker`'s entry), for SIGKILL. */
export type ChildWorker = ChildProcessHandle;

export function spawnWorker(service: Pick<Service, 'env'>, env: Record<string, string> = {}): ChildWorker {
  return spawnEntry('apps/worker/src/main.ts', { ...service.env, HEALTH_PORT: '0', HEALTH_HOST: '127.0.0.1', ...FAST_RECOVERY, ...env }, 'worker ready: taking jobs');
}

export interface SseEvent {
  event: string;
  data: any;
}

/** Reads a Server-Sent Events stream to its end (or until `stop` says so). */
export async function readEvents(url: string, apiKey: string, stop: (e: SseEvent, all: SseEvent[]) => boolean = () => false): Promise<SseEvent[]> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${apiKey}`, accept: 'text/event-stream' } });
  if (res.status !== 200) throw new Error(`events: ${res.status} ${await res.text()}`);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!event) continue;
      const parsed = { event, data: data ? JSON.parse(data) : undefined };
      events.push(parsed);
      if (stop(parsed, events)) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}

export async function waitFor<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A Stability-style text-to-image body at tiny-sd's native size, 10 steps. */
export function textToImageBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 42, ...extra });
}

export function authed(apiKey: string, headers: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${apiKey}`, ...headers };
}

/** An account with `credits` (more than apiKey's 10, for engines priced per image) and its key. */
export async function accountWith(service: Pick<Service, 'url'>, name: string, credits: number): Promise<string> {
  const res = await fetch(`${service.url}/v1/admin/accounts`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name, credits }),
  });
  if (res.status !== 201) throw new Error(`account creation failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { api_key: string }).api_key;
}

/** An image's pixels as RGB triples: `at(x, y)`. */
export async function rgbOf(image: Buffer): Promise<{ width: number; height: number; at(x: number, y: number): number[] }> {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, at: (x, y) => [0, 1, 2].map((c) => data[(y * info.width + x) * 3 + c]) };
}

/** What "a red circle on a blue background" gives: a red centre, blue corners. */
export const redish = ([r, g, b]: number[]) => r > 128 && g < 110 && b < 110;
export const bluish = ([r, g, b]: number[]) => b > r + 40 && b > 100;

/** An account's balance in credits, as its key reads it. */
export async function balanceOf(service: Pick<Service, 'url'>, apiKey: string): Promise<number> {
  return ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(apiKey) })).json()) as { credits: number }).credits;
}

/** What most suites start: Redis, the API in-process and one worker; close() stops them in order. */
export interface Stack {
  redis: TestRedis;
  service: Service;
  worker: TestWorker;
  close(): Promise<void>;
}

export async function startStack(opts: { env?: Record<string, string>; workerEnv?: Record<string, string> } = {}): Promise<Stack> {
  const redis = await startTestRedis();
  const service = await startService(redis, { env: opts.env });
  const worker = await startTestWorker(service, opts.workerEnv);
  return {
    redis,
    service,
    worker,
    close: async () => {
      await worker.close(1000);
      await service.close();
      await redis.close();
    },
  };
}
