/**
 * Adapter sets under WORKER_MODEL_MEMORY_MB: a set holds copies of the graphs it changes (tiny-sd's UNet
 * and text encoder, 26 MB), counted with the engines' weights. With tiny-sd (32 MB) and tiny-sdxl (33 MB)
 * loaded under 70 MB, a LoRA job on tiny-sd unloads the idle tiny-sdxl to make room; under 50 MB the set
 * can never fit beside its engine, and the job fails at once saying so.
 */
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue, QueueEvents } from 'bullmq';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFailedReason, queueNameForEngine } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { parseWorkerConfig } from '../src/config';
import { type RunningWorker, startWorker } from '../src/worker';
import { circleJob } from './circle-job';

const MODELS_DIR = mkdtempSync(join(tmpdir(), 'sdq-lora-memory-models-'));
symlinkSync(join(import.meta.dirname, '../../../../shared/models/tiny-sd'), join(MODELS_DIR, 'tiny-sd'));
symlinkSync(join(import.meta.dirname, '../../../models/tiny-sdxl'), join(MODELS_DIR, 'tiny-sdxl'));
const loraDir = mkdtempSync(join(tmpdir(), 'sdq-lora-memory-loras-'));
const artifacts = mkdtempSync(join(tmpdir(), 'sdq-lora-memory-artifacts-'));
copyFileSync(join(import.meta.dirname, '../../../packages/pipeline/test/fixtures/adapters/green-objects.safetensors'), join(loraDir, 'green-objects.safetensors'));

let redis: TestRedis;
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis?.close();
  for (const dir of [MODELS_DIR, loraDir, artifacts]) rmSync(dir, { recursive: true, force: true });
});

async function withWorker(memoryMb: number, prefix: string, fn: (worker: RunningWorker, run: () => Promise<{ ok: boolean; failure?: { name: string; message: string }; attempts: number }>) => Promise<void>) {
  const config = parseWorkerConfig({ REDIS_URL: redis.url, QUEUE_PREFIX: `${redis.prefix}${prefix}`, MODELS_DIR, WORKER_PRELOAD: 'all', WORKER_MODEL_MEMORY_MB: String(memoryMb), LORA_DIR: loraDir, ARTIFACTS_DIR: artifacts, HEALTH_PORT: '0', HEALTH_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
  const worker = await startWorker(config, pino({ level: 'silent' }));
  const queue = new Queue(queueNameForEngine('tiny-sd'), { prefix: config.queuePrefix, connection: { url: redis.url } });
  const events = new QueueEvents(queueNameForEngine('tiny-sd'), { prefix: config.queuePrefix, connection: { url: redis.url } });
  await events.waitUntilReady();
  const run = async () => {
    const jobId = `${prefix}-${Date.now()}`;
    const payload = circleJob(jobId, { steps: 10, loras: [{ name: 'green-objects', weight: 1 }] });
    const job: Job = await queue.add(payload.kind, payload, { jobId, attempts: 2, backoff: { type: 'fixed', delay: 100 } });
    try {
      await job.waitUntilFinished(events, 30_000);
      return { ok: true, attempts: 1 };
    } catch {
      const failed = (await queue.getJob(jobId))!;
      return { ok: false, failure: parseFailedReason(failed.failedReason), attempts: failed.attemptsMade };
    }
  };
  try {
    await fn(worker, run);
  } finally {
    await worker.close(1000);
    await events.close();
    await queue.close();
  }
}

describe('adapter sets under the model memory bound', () => {
  it('unloads an idle engine to make room for a set', async () => {
    await withWorker(70, 'room', async (worker, run) => {
      expect(worker.loaded.sort()).toEqual(['tiny-sd', 'tiny-sdxl']);
      expect(await run()).toMatchObject({ ok: true });
      expect(worker.loaded).toEqual(['tiny-sd']);
      expect(worker.unloads).toBe(1);
    });
  });

  it('fails a job whose set can never fit beside its engine, at once, saying so', async () => {
    await withWorker(50, 'never', async (worker, run) => {
      const result = await run();
      expect(result.ok).toBe(false);
      expect(result.attempts).toBe(1);
      expect(result.failure).toEqual({ name: 'bad_request', message: expect.stringMatching(/adapter set holds 25 MB of graphs: with its engine that is over WORKER_MODEL_MEMORY_MB/) });
      expect(worker.loaded).toContain('tiny-sd');
    });
  });
});
