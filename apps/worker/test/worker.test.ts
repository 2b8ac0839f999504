/**
 * The worker against a real Redis, local storage in a temporary folder and the real tiny models. Jobs
 * are enqueued with BullMQ directly, as the API would (job options as the API's jobOptions gives them).
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelChannel, cancelFlagKey, inputKey, type JobPayload, JobResult, parseFailedReason, queueNameForEngine } from '@sdq/contracts';
import { LocalStorage } from '@sdq/storage';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { ConfigError, parseWorkerConfig, type WorkerConfig } from '../src/config';
import { HANDLERS, type JobHandlers } from '../src/handlers';
import { type RunningWorker, startWorker } from '../src/worker';

const MODELS_DIR = join(import.meta.dirname, '../../../models');
const JOB_OPTIONS = { attempts: 3, backoff: { type: 'exponential', delay: 100 }, removeOnComplete: false, removeOnFail: false };

describe('worker configuration', () => {
  it.each([
    [{ WORKER_CONCURRENCY: 'two' }, 'Invalid environment: WORKER_CONCURRENCY must be a number (got "two")'],
    [{ WORKER_CONCURRENCY: '0' }, 'Invalid environment: WORKER_CONCURRENCY'],
    [{ EXECUTION_PROVIDERS: 'cuda,gpu' }, 'Invalid environment: EXECUTION_PROVIDERS'],
    [{ REDIS_URL: 'http://x' }, 'Invalid environment: REDIS_URL must be redis://, rediss://, redis+sentinel:// or redis+cluster://'],
    [{ S3_ENDPOINT: 'http://127.0.0.1:9000' }, 'Invalid environment: S3_BUCKET is required when S3_ENDPOINT is set'],
    [{ AWS_ACCESS_KEY_ID: 'a' }, 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together'],
    [{ AWS_SECRET_ACCESS_KEY: 'x', AWS_ACCESS_KEY_ID: 'a', S3_FORCE_PATH_STYLE: 'yes' }, 'Invalid environment: S3_FORCE_PATH_STYLE'],
    [{ HEALTH_PORT: '70000' }, 'Invalid environment: HEALTH_PORT'],
    [{ ENGINES: ' , ' }, 'Invalid environment: ENGINES names no engine'],
  ])('%j is refused naming the variable', (env, message) => {
    expect(() => parseWorkerConfig(env)).toThrow(ConfigError);
    expect(() => parseWorkerConfig(env)).toThrow(message);
  });

  it('has defaults for everything and parses lists', () => {
    const config = parseWorkerConfig({ ENGINES: 'tiny-sd, tiny-upscaler-x2', EXECUTION_PROVIDERS: 'cuda,cpu' });
    expect(config).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: 'sdq',
      modelsDir: './models',
      engines: ['tiny-sd', 'tiny-upscaler-x2'],
      concurrency: 1,
      providers: ['cuda', 'cpu'],
      storage: { local: { dir: '.data/artifacts' } },
    });
  });
});

describe('worker', () => {
  let redis: TestRedis;
  let client: Redis;
  let artifacts: string;
  let storage: LocalStorage;
  let worker: RunningWorker;
  const queues = new Map<string, Queue>();
  let events: QueueEvents;
  let config: WorkerConfig;

  const testConfig = (env: Record<string, string> = {}) =>
    parseWorkerConfig({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: redis.prefix,
      MODELS_DIR,
      ARTIFACTS_DIR: artifacts,
      HEALTH_PORT: '0',
      HEALTH_HOST: '127.0.0.1',
      WORKER_LOCK_DURATION_MS: '2000',
      WORKER_STALLED_INTERVAL_MS: '1000',
      LOG_LEVEL: 'silent',
      ...env,
    });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const queue = (engine: string) => {
    if (!queues.has(engine)) queues.set(engine, new Queue(queueNameForEngine(engine), { prefix: redis.prefix, connection: { url: redis.url } }));
    return queues.get(engine)!;
  };
  let n = 0;
  const textToImage = (extra: Partial<Extract<JobPayload, { kind: 'text-to-image' }>['params']> = {}): JobPayload => ({
    version: 1,
    jobId: `job-${++n}-${Date.now()}`,
    accountId: 'acct_test',
    engineId: 'tiny-sd',
    createdAt: Date.now(),
    kind: 'text-to-image',
    params: { prompts: [{ text: 'a red circle on a blue background' }], width: 128, height: 128, steps: 10, cfgScale: 7, samples: 1, seed: 42, outputFormat: 'png', ...extra },
  });
  const add = (payload: JobPayload, opts: object = {}) => queue(payload.engineId).add(payload.kind, payload, { jobId: payload.jobId, ...JOB_OPTIONS, ...opts });
  const finished = async (job: Job) => {
    try {
      return { result: JobResult.parse(await job.waitUntilFinished(events, 30_000)) };
    } catch {
      const again = (await queue(job.data.engineId).getJob(job.id!))!;
      return { failure: parseFailedReason(again.failedReason), attemptsMade: again.attemptsMade };
    }
  };

  /** Runs the job and checks it failed on its first attempt; returns why. */
  const failedAtOnce = async (payload: JobPayload) => {
    const job = await add(payload);
    const listen = payload.engineId === 'tiny-sd' ? events : new QueueEvents(queueNameForEngine(payload.engineId), { prefix: redis.prefix, connection: { url: redis.url } });
    await job.waitUntilFinished(listen, 30_000).catch(() => {});
    if (listen !== events) await listen.close();
    const failed = (await queue(payload.engineId).getJob(job.id!))!;
    expect(await failed.getState()).toBe('failed');
    expect(failed.attemptsMade).toBe(1);
    return parseFailedReason(failed.failedReason);
  };

  beforeAll(async () => {
    redis = await startTestRedis();
    client = new Redis(redis.url);
    artifacts = mkdtempSync(join(tmpdir(), 'sdq-worker-artifacts-'));
    storage = new LocalStorage({ dir: artifacts, publicUrl: 'http://127.0.0.1', secret: 'unused-secret-0123456789' });
    config = testConfig();
    worker = await startWorker(config, logger);
    events = new QueueEvents(queueNameForEngine('tiny-sd'), { prefix: redis.prefix, connection: { url: redis.url } });
    await events.waitUntilReady();
  });
  afterAll(async () => {
    await worker?.close(1000);
    await events?.close();
    await Promise.all([...queues.values()].map((q) => q.close()));
    client?.disconnect();
    await redis?.close();
    rmSync(artifacts, { recursive: true, force: true });
  });

  it('serves every engine under MODELS_DIR and answers /healthz and /readyz', async () => {
    expect(worker.engines).toEqual(['tiny-sd', 'tiny-sd3', 'tiny-sdxl', 'tiny-upscaler-x2']);
    const health = await fetch(`http://127.0.0.1:${worker.healthPort}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${worker.healthPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('serves the good engines when a folder beside them is broken, logging the broken one once (WORKER_PRELOAD=all: each is tried at start)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-worker-mixed-'));
    try {
      symlinkSync(join(MODELS_DIR, 'tiny-sd'), join(dir, 'tiny-sd'));
      symlinkSync(join(MODELS_DIR, 'tiny-upscaler-x2'), join(dir, 'tiny-upscaler-x2'));
      mkdirSync(join(dir, 'flux'));
      writeFileSync(join(dir, 'flux', 'model_index.json'), JSON.stringify({ _class_name: 'FluxPipeline' }));
      mkdirSync(join(dir, 'no-unet'));
      cpSync(join(MODELS_DIR, 'tiny-sd'), join(dir, 'no-unet'), { recursive: true });
      rmSync(join(dir, 'no-unet', 'unet', 'model.onnx'));
      const lines: { msg: string; engine?: string; reason?: string }[] = [];
      const sink = new Writable({
        write(chunk, _enc, done) {
          for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      });
      const mixed = await startWorker(testConfig({ MODELS_DIR: dir, QUEUE_PREFIX: `${redis.prefix}mixed`, WORKER_PRELOAD: 'all' }), pino({ level: 'info' }, sink));
      try {
        expect(mixed.engines).toEqual(['tiny-sd', 'tiny-upscaler-x2']);
        const refused = lines.filter((l) => l.msg === 'engine not served: it failed to load');
        expect(refused.map((l) => l.engine).sort()).toEqual(['flux', 'no-unet']);
        expect(refused.find((l) => l.engine === 'flux')!.reason).toMatch(/_class_name "FluxPipeline" is not a family sdq knows/);
        expect(refused.find((l) => l.engine === 'no-unet')!.reason).toMatch(/model file missing: .*no-unet\/unet\/model\.onnx/);
        expect((await fetch(`http://127.0.0.1:${mixed.healthPort}/readyz`)).status).toBe(200);
      } finally {
        await mixed.close(1000);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['a job name without a handler', {}, { ...HANDLERS, masking: undefined } as unknown as JobHandlers, /no handler registered for job name\(s\): masking/],
    ['ENGINES naming an engine that is not there', { ENGINES: 'tiny-sd,sd-xl' }, HANDLERS, /ENGINES names sd-xl, not found under MODELS_DIR .* \(found: tiny-sd, tiny-sd3, tiny-sdxl, tiny-upscaler-x2\)/],
  ])('refuses to start with %s', async (_name, env, handlers, message) => {
    await expect(startWorker(testConfig({ ...env, QUEUE_PREFIX: `${redis.prefix}x` }), logger, handlers)).rejects.toThrow(message);
  });

  it('runs a text-to-image job: progress after every step, images under generations/<job id>/', async () => {
    const payload = textToImage({ samples: 2 });
    const progress: unknown[] = [];
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => jobId === payload.jobId && progress.push(data);
    events.on('progress', onProgress);
    const { result } = await finished(await add(payload));
    events.off('progress', onProgress);
    expect(progress).toEqual(Array.from({ length: 10 }, (_, i) => ({ step: i + 1, steps: 10 })));
    expect(result!.artifacts).toEqual([
      { key: `generations/${payload.jobId}/0.png`, seed: 42, finish_reason: 'SUCCESS', content_type: 'image/png', width: 128, height: 128 },
      { key: `generations/${payload.jobId}/1.png`, seed: 43, finish_reason: 'SUCCESS', content_type: 'image/png', width: 128, height: 128 },
    ]);
    const meta = await sharp(await storage.get(result!.artifacts[0].key)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 128, 128]);
  });

  it('runs an upscale job from a stored input on the upscaler engine', async () => {
    const jobId = `up-${Date.now()}`;
    const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3050c0' } }).png().toBuffer();
    await storage.put(inputKey(jobId, 'image'), image, 'image/png');
    const upEvents = new QueueEvents(queueNameForEngine('tiny-upscaler-x2'), { prefix: redis.prefix, connection: { url: redis.url } });
    const job = await add({ version: 1, jobId, accountId: 'a', engineId: 'tiny-upscaler-x2', createdAt: Date.now(), kind: 'upscale', params: { outputFormat: 'webp' }, inputs: { image: inputKey(jobId, 'image') } });
    const result = JobResult.parse(await job.waitUntilFinished(upEvents, 30_000));
    await upEvents.close();
    expect(result.artifacts).toMatchObject([{ key: `generations/${jobId}/0.webp`, content_type: 'image/webp', width: 128, height: 128 }]);
  });

  it.each([
    ['an unknown payload version', { version: 2 }, 'bad_request', /payload version 2/],
    ['a malformed payload', { params: { prompts: [] } }, 'bad_request', /invalid payload: params/],
    ['a width that is no size of the engine', { params: { ...textToImage().params, width: 100 } }, 'invalid_height_or_width', /100x128 is not a size of engine tiny-sd/],
    // 23 GB and the kernel's OOM killer once: a size the API would refuse, sent straight to the queue.
    ['a size over the engine\'s limits', { params: { ...textToImage().params, width: 1024, height: 1024 } }, 'invalid_height_or_width', /1024x1024 is not a size of engine tiny-sd; allowed: .*up to 512x512/],
    ['an input error found by the pipeline', { params: { ...textToImage().params, prompts: [{ text: 'a', weight: -1 }] } }, 'invalid_prompts', /positive weight/],
    ['a job for the wrong kind of engine', { engineId: 'tiny-upscaler-x2' }, 'bad_request', /upscale engine/],
  ])('fails %s at once, without retrying', async (_name, change, errorName, message) => {
    const payload = { ...textToImage(), ...change } as JobPayload;
    const reason = await failedAtOnce(payload);
    expect(reason.name).toBe(errorName);
    expect(reason.message).toMatch(message);
  });

  // An input the API could not have seen broken (written to storage by another tool, or damaged there):
  // the pipeline's decode failure is the input's fault, so one attempt, with the field's catalogue name.
  it.each([
    ['a truncated init image', 'image-to-image', 'init_image', 'invalid_init_image'],
    ['a corrupt mask image', 'masking', 'mask_image', 'invalid_mask_image'],
    ['a truncated upscale image', 'upscale', 'image', 'invalid_init_image'],
  ] as const)('fails %s at once, without retrying', async (_name, kind, broken, errorName) => {
    const jobId = `bad-${kind}-${Date.now()}`;
    const good = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png().toBuffer();
    const bad = broken === 'mask_image' ? Buffer.from(good).map((b, i) => (i > 200 && i % 7 === 0 ? b ^ 0x5a : b)) : good.subarray(0, Math.floor(good.length * 0.6));
    const fields = kind === 'masking' ? (['init_image', 'mask_image'] as const) : kind === 'upscale' ? (['image'] as const) : (['init_image'] as const);
    const inputs: Record<string, string> = {};
    for (const field of fields) {
      const key = inputKey(jobId, field);
      await storage.put(key, field === broken ? Buffer.from(bad) : good, 'image/png');
      inputs[field === 'init_image' ? 'initImage' : field === 'mask_image' ? 'maskImage' : 'image'] = key;
    }
    const base = { version: 1 as const, jobId, accountId: 'a', createdAt: Date.now(), inputs };
    const payload = (
      kind === 'upscale'
        ? { ...base, engineId: 'tiny-upscaler-x2', kind, params: { outputFormat: 'png' } }
        : { ...base, engineId: 'tiny-sd', kind, params: { ...textToImage().params, imageStrength: 0.5, ...(kind === 'masking' ? { maskSource: 'MASK_IMAGE_WHITE' } : {}) } }
    ) as JobPayload;
    expect(await failedAtOnce(payload)).toMatchObject({ name: errorName, message: expect.stringMatching(/truncated or corrupt|could not be decoded|not a readable/) });
  });

  it('fails a job whose cancel flag is set before it starts as canceled', async () => {
    const payload = textToImage();
    await client.set(cancelFlagKey(redis.prefix, payload.jobId), '1', 'EX', 60);
    const { failure, attemptsMade } = await finished(await add(payload));
    expect(failure).toEqual({ name: 'canceled', message: 'the job was canceled' });
    expect(attemptsMade).toBe(1);
  });

  it('stops a running job within one step when the cancel message comes', async () => {
    const payload = textToImage({ steps: 150 });
    const steps: number[] = [];
    let stepAtCancel = 0;
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
      if (jobId !== payload.jobId) return;
      const { step } = data as { step: number };
      steps.push(step);
      if (step === 3) {
        stepAtCancel = step;
        void client.set(cancelFlagKey(redis.prefix, payload.jobId), '1', 'EX', 60).then(() => client.publish(cancelChannel(redis.prefix), payload.jobId));
      }
    };
    events.on('progress', onProgress);
    const { failure } = await finished(await add(payload));
    events.off('progress', onProgress);
    expect(failure?.name).toBe('canceled');
    // Progress events travel through Redis while the pipeline goes on: a few steps' slack, not 150.
    expect(Math.max(...steps)).toBeLessThan(stepAtCancel + 10);
  });

  it('retries runtime failures with backoff, then fails after 3 attempts', async () => {
    // A second worker on its own prefix whose text-to-image handler always throws a runtime error.
    const prefix = `${redis.prefix}r`;
    let calls = 0;
    const failing: JobHandlers = { ...HANDLERS, 'text-to-image': async () => (calls++, Promise.reject(new Error('storage: could not write (ECONNREFUSED)'))) };
    const other = await startWorker({ ...testConfig({ QUEUE_PREFIX: prefix, ENGINES: 'tiny-sd' }) }, logger, failing);
    const q = new Queue(queueNameForEngine('tiny-sd'), { prefix, connection: { url: redis.url } });
    const ev = new QueueEvents(queueNameForEngine('tiny-sd'), { prefix, connection: { url: redis.url } });
    try {
      const payload = textToImage();
      const job = await q.add(payload.kind, payload, { jobId: payload.jobId, ...JOB_OPTIONS });
      await expect(job.waitUntilFinished(ev, 30_000)).rejects.toThrow(/ECONNREFUSED/);
      const failed = (await q.getJob(job.id!))!;
      expect(failed.attemptsMade).toBe(3);
      expect(calls).toBe(3);
      expect(parseFailedReason(failed.failedReason).name).toBe('internal_error');
    } finally {
      await ev.close();
      await q.close();
      await other.close(1000);
    }
  });

  it('on close, finishes the running job within the grace period', async () => {
    const prefix = `${redis.prefix}g`;
    const other = await startWorker(testConfig({ QUEUE_PREFIX: prefix, ENGINES: 'tiny-sd' }), logger);
    const q = new Queue(queueNameForEngine('tiny-sd'), { prefix, connection: { url: redis.url } });
    try {
      const payload = textToImage({ steps: 30 });
      const job = await q.add(payload.kind, payload, { jobId: payload.jobId, ...JOB_OPTIONS });
      await waitFor(async () => (await job.getState()) === 'active');
      await other.close(30_000);
      expect(await job.getState()).toBe('completed');
    } finally {
      await q.close();
    }
  });

  it('past the grace period, returns the running job to the queue without spending an attempt', async () => {
    const prefix = `${redis.prefix}h`;
    const other = await startWorker(testConfig({ QUEUE_PREFIX: prefix, ENGINES: 'tiny-sd' }), logger);
    const q = new Queue(queueNameForEngine('tiny-sd'), { prefix, connection: { url: redis.url } });
    try {
      const payload = textToImage({ steps: 150 });
      const job = await q.add(payload.kind, payload, { jobId: payload.jobId, ...JOB_OPTIONS });
      await waitFor(async () => ((await q.getJob(job.id!))?.progress as { step?: number })?.step! >= 1);
      await other.close(200);
      const back = (await q.getJob(job.id!))!;
      expect(await back.getState()).toBe('waiting');
      expect(back.attemptsMade).toBe(0);
    } finally {
      await q.close();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
