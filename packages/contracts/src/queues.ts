/**
 * Queue naming and the Redis names both apps must agree on.
 *
 * One BullMQ queue per engine, so that a job for an engine only reaches the workers that serve it:
 * a worker opens the queues of the engines it has loaded and nothing else. Every key lives under a
 * prefix (env QUEUE_PREFIX, default "sdq"), passed as BullMQ's `prefix` option and used for sdq's own
 * keys too, so two deployments (or two test files) can share one Redis without seeing each other.
 */

/** Default key prefix (env QUEUE_PREFIX). */
export const DEFAULT_QUEUE_PREFIX = 'sdq';

/**
 * Job names: one per kind of work. A kind is declared here and by its payload in jobs.ts (`JobPayload`);
 * the compiler then points at every other place it must fill: the worker's handler table, the API's
 * price rules (pricing.ts) and input storage fields (jobs.service.ts). `enhance` is a text-guided
 * upscale (v2beta creative and conservative): resize, then tiled image-to-image. `animation` is a sequence
 * of frames between keyframes, written as one animated file (sdq's own route).
 */
export const JOB_NAMES = ['text-to-image', 'image-to-image', 'masking', 'upscale', 'enhance', 'animation'] as const;
export type JobName = (typeof JOB_NAMES)[number];
/** A job's kind is its name. */
export type JobKind = JobName;

/**
 * The BullMQ queue name of an engine. BullMQ forbids ':' in queue names (it separates key parts), so
 * engine ids holding one are refused here rather than producing keys that collide.
 */
export function queueNameForEngine(engineId: string): string {
  if (!engineId || engineId.includes(':')) throw new Error(`invalid engine id for a queue name: ${JSON.stringify(engineId)}`);
  return `engine.${engineId}`;
}

/**
 * Pub/sub channel on which the API asks workers to stop a running job. Message: the job id, as a plain
 * string. A worker subscribed to it aborts that job's AbortSignal if it is running the job, and the job
 * then fails with the `canceled` reason (see formatFailedReason).
 */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel`;
}

/**
 * A key set (with a TTL) by the API when it asks for a cancellation, so that a worker that picks the
 * job up after the pub/sub message went out still sees it: a worker checks it before starting a job.
 */
export function cancelFlagKey(prefix: string, jobId: string): string {
  return `${prefix}:cancel:${jobId}`;
}

/** How long a cancel flag lives: longer than any job could wait to start after its cancel. */
export const CANCEL_FLAG_TTL_SECONDS = 24 * 3600;

/**
 * Worker presence: each worker keeps a sorted set per engine it serves, `<prefix>:served:<engine>`,
 * with its worker id scored by when its claim runs out (Redis time, ms). The API counts the members
 * scored after now to tell whether any live worker serves an engine.
 */
export function servedEngineKey(prefix: string, engineId: string): string {
  return `${prefix}:served:${engineId}`;
}

/**
 * The engines a worker has loaded (a subset of those it serves: the rest it loads when a job for one
 * waits), claimed as `servedEngineKey` is. A job waiting for an engine no worker has loaded is what
 * makes a worker load it (WORKER_PRELOAD, COLD_START_DELAY_MS).
 */
export function loadedEngineKey(prefix: string, engineId: string): string {
  return `${prefix}:loaded:${engineId}`;
}

/**
 * Taken (SET NX, with a TTL) by the one worker that starts loading an engine for its waiting jobs, so
 * that two idle workers do not both load (and evict for) the same engine at the same moment.
 */
export function engineLoadLockKey(prefix: string, engineId: string): string {
  return `${prefix}:loading:${engineId}`;
}

/** How often a worker renews its claim, and how long a claim lasts without renewal (ms). */
export const PRESENCE_INTERVAL_MS = 5000;
export const PRESENCE_TTL_MS = 15_000;

/**
 * The live workers: `<prefix>:workers` scores each worker id by when its heartbeat runs out (Redis time,
 * ms), and `<prefix>:worker:<id>` holds what it reports (WorkerRecord's fields, as strings), renewed with
 * its claims. GET /v1/admin/workers lists the ids scored after now.
 */
export function workersKey(prefix: string): string {
  return `${prefix}:workers`;
}
export function workerInfoKey(prefix: string, workerId: string): string {
  return `${prefix}:worker:${workerId}`;
}
