/**
 * A job that asks for a LoRA set, run by a real worker on tiny-sd: the fixture LoRA makes the red circle
 * green, the same job without it stays red, the set is blended once and kept for the next job with the
 * same set, and a LoRA that is not in LORA_DIR fails the job at once (not retried) naming it.
 */
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue, QueueEvents } from 'bullmq';
import { pino } from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobResult, parseFailedReason, queueNameForEngine } from '@sdq/contracts';
import { LocalStorage } from '@sdq/storage';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { parseWorkerConfig } from '../src/config';
import { type RunningWorker, startWorker } from '../src/worker';
import { circleJob } from './circle-job';

// tiny-sd as ../shared/models/tiny-sd exports it: nodes named after modules, which LoRAs need
const MODELS_DIR = mkdtempSync(join(tmpdir(), 'sdq-lora-models-'));
symlinkSync(join(import.meta.dirname, '../../../../shared/models/tiny-sd'), join(MODELS_DIR, 'tiny-sd'));
const ADAPTERS = join(import.meta.dirname, '../../../packages/pipeline/test/fixtures/adapters');

let redis: TestRedis;
let worker: RunningWorker;
let queue: Queue;
let events: QueueEvents;
let storage: LocalStorage;
const artifacts = mkdtempSync(join(tmpdir(), 'sdq-lora-artifacts-'));
const loraDir = mkdtempSync(join(tmpdir(), 'sdq-loras-'));

beforeAll(async () => {
  copyFileSync(join(ADAPTERS, 'green-objects.safetensors'), join(loraDir, 'green-objects.safetensors'));
  redis = await startTestRedis();
  storage = new LocalStorage({ dir: artifacts, publicUrl: 'http://127.0.0.1', secret: 'unused-secret-0123456789' });
  const config = parseWorkerConfig({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR, ENGINES: 'tiny-sd', LORA_DIR: loraDir, ARTIFACTS_DIR: artifacts, HEALTH_PORT: '0', HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
  worker = await startWorker(config, pino({ level: 'silent' }));
  queue = new Queue(queueNameForEngine('tiny-sd'), { prefix: redis.prefix, connection: { url: redis.url } });
  events = new QueueEvents(queueNameForEngine('tiny-sd'), { prefix: redis.prefix, connection: { url: redis.url } });
  await events.waitUntilReady();
});
afterAll(async () => {
  await worker?.close(1000);
  await events?.close();
  await queue?.close();
  await redis?.close();
  rmSync(artifacts, { recursive: true, force: true });
  rmSync(loraDir, { recursive: true, force: true });
  rmSync(MODELS_DIR, { recursive: true, force: true });
});

let n = 0;
const run = async (loras?: { name: string; weight: number }[]) => {
  const jobId = `lora-${++n}-${Date.now()}`;
  const payload = circleJob(jobId, loras ? { loras } : {});
  const job: Job = await queue.add(payload.kind, payload, { jobId, attempts: 3, backoff: { type: 'exponential', delay: 100 } });
  try {
    const result = JobResult.parse(await job.waitUntilFinished(events, 30_000));
    const { data, info } = await sharp(await storage.get(result.artifacts[0].key)).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [0, 1, 2].map((c) => data[(y * info.width + x) * info.channels + c] / 255);
    return { centre: at(64, 64), corner: at(4, 4) };
  } catch {
    const failed = (await queue.getJob(jobId))!;
    return { failure: parseFailedReason(failed.failedReason), attemptsMade: failed.attemptsMade };
  }
};

describe('jobs with LoRAs', () => {
  it('draws the circle green with the LoRA at 1 and red without it, on one worker, the base engine unchanged', async () => {
    const green = await run([{ name: 'green-objects', weight: 1 }]);
    const [r, g, b] = green.centre!;
    expect(g, `centre ${green.centre}`).toBeGreaterThan(r + 0.1);
    expect(g).toBeGreaterThan(b + 0.1);
    const red = await run();
    expect(red.centre![0], `centre ${red.centre}`).toBeGreaterThan(0.5);
    expect(red.centre![1]).toBeLessThan(0.35);
    // the same set again: kept, the same picture
    expect(await run([{ name: 'green-objects', weight: 1 }])).toEqual(green);
  });

  it('fails a job naming a LoRA that is not in LORA_DIR at once, saying so', async () => {
    const missing = await run([{ name: 'blue-objects', weight: 1 }]);
    expect(missing.attemptsMade).toBe(1);
    expect(missing.failure).toEqual({ name: 'invalid_lora', message: expect.stringMatching(/LoRA blue-objects: no blue-objects\.safetensors in LORA_DIR/) });
  });
});
