/**
 * A stand-in for apps/worker that follows the contracts exactly, so the API's sync answers, SSE and job
 * objects can be tested before the real worker exists: it validates the payload, honours the cancel
 * flag and channel, reports `{step, steps}` after every step (and its jobs' events to the job event
 * stream, for webhook delivery), uploads solid-colour images to
 * `generations/<job id>/<i>.<ext>` and returns a JobResult. Prompts steer it: "fail:<name>" fails with
 * that catalogue name, "slow" takes 100 ms a step.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { JobEventLog } from '@sdq/jobs';
import { UnrecoverableError, Worker } from 'bullmq';
import sharp from 'sharp';
import {
  artifactKey,
  cancelChannel,
  cancelFlagKey,
  CONTENT_TYPES,
  type ErrorName,
  formatFailedReason,
  JobPayload,
  type JobResult,
  queueNameForEngine,
  type Storage,
} from '@sdq/contracts';
import { redisOptionsFromUrl } from '../../src/config';

export async function startStubWorker(opts: { redisUrl: string; prefix: string; engine: string; storage: Storage; stepMs?: number }): Promise<{ close(): Promise<void> }> {
  const running = new Map<string, AbortController>();
  const sub = new Redis(opts.redisUrl);
  const cmd = new Redis(opts.redisUrl);
  await sub.subscribe(cancelChannel(opts.prefix));
  sub.on('message', (_channel, jobId: string) => running.get(jobId)?.abort());

  const worker = new Worker(
    queueNameForEngine(opts.engine),
    async (job) => {
      const payload = JobPayload.parse(job.data);
      const controller = new AbortController();
      running.set(payload.jobId, controller);
      try {
        if (await cmd.exists(cancelFlagKey(opts.prefix, payload.jobId))) controller.abort();
        const prompt = 'prompts' in payload.params ? payload.params.prompts[0].text : '';
        if (prompt.startsWith('fail:')) throw new UnrecoverableError(formatFailedReason(prompt.slice(5) as ErrorName, 'the stub worker was told to fail'));
        const steps = 'steps' in payload.params ? payload.params.steps : 1;
        const stepMs = prompt.includes('slow') ? 100 : (opts.stepMs ?? 0);
        for (let step = 1; step <= steps; step++) {
          if (controller.signal.aborted) throw new UnrecoverableError(formatFailedReason('canceled', 'canceled during step ' + step));
          if (stepMs) await new Promise((r) => setTimeout(r, stepMs));
          await job.updateProgress({ step, steps });
        }
        const format = payload.params.outputFormat;
        const width = payload.params.width ?? 256;
        const height = payload.params.height ?? 256;
        const samples = 'samples' in payload.params ? payload.params.samples : 1;
        const result: JobResult = { artifacts: [] };
        for (let i = 0; i < samples; i++) {
          const data = await sharp({ create: { width, height, channels: 3, background: { r: 200, g: 20, b: 20 } } })
            .toFormat(format)
            .toBuffer();
          const key = artifactKey(payload.jobId, i, format);
          await opts.storage.put(key, data, CONTENT_TYPES[format]);
          const seed = 'seed' in payload.params && payload.params.seed ? payload.params.seed + i : 1234 + i;
          result.artifacts.push({ key, seed, finish_reason: 'SUCCESS', content_type: CONTENT_TYPES[format], width, height });
        }
        return result;
      } finally {
        running.delete(payload.jobId);
      }
    },
    { connection: { ...redisOptionsFromUrl(opts.redisUrl), maxRetriesPerRequest: null }, prefix: opts.prefix, concurrency: 1 },
  );
  // its jobs' events, as the real worker appends them, for webhook delivery
  new JobEventLog(cmd, opts.prefix, pino({ level: 'silent' })).follow(worker);
  await worker.waitUntilReady();
  return {
    close: async () => {
      await worker.close();
      sub.disconnect();
      cmd.disconnect();
    },
  };
}
