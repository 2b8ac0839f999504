/**
 * Replicate's HTTP API as sdq takes it (`/replicate/v1`): the input fields of Replicate's Stable
 * Diffusion models, the prediction request, and the prediction object, built here from a job object so
 * that the API's answers and the delivery process's webhook bodies are the same object.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { JobObject } from './jobs';
import { LorasField, MAX_PROMPT_LENGTH, MAX_SEED } from './requests';

/** Replicate's scheduler names (its SD and SDXL models') and the sdq sampler each runs. */
export const REPLICATE_SCHEDULERS: Readonly<Record<string, string>> = Object.freeze({
  DDIM: 'DDIM',
  DPMSolverMultistep: 'K_DPMPP_2M',
  HeunDiscrete: 'K_HEUN',
  KarrasDPM: 'K_DPMPP_2M_KARRAS',
  K_EULER_ANCESTRAL: 'K_EULER_ANCESTRAL',
  K_EULER: 'K_EULER',
  PNDM: 'PNDM',
  LMSDiscrete: 'K_LMS',
  DDPM: 'DDPM',
});

/** A data URI or an http(s) URL, as Replicate takes files in `input`. */
const fileInput = (what: string) => z.string().max(28_000_000).describe(`${what}: a data URI (data:image/png;base64,...), or the signed URL of an sdq artifact (a prediction's output, with local storage); sdq fetches no other URL`);

/**
 * The input of sdq's Replicate models: the fields Replicate's Stable Diffusion models take (and the AI
 * SDK's `size` and `aspect_ratio`). Fields a model has that sdq does not use (refine, apply_watermark,
 * disable_safety_checker, ...) are accepted and ignored, as Replicate ignores inputs a model lacks.
 */
export const ReplicateInputFields = z.object({
    prompt: z.string().max(MAX_PROMPT_LENGTH).default(''),
    negative_prompt: z.string().max(MAX_PROMPT_LENGTH).optional(),
    width: z.number().int().min(64).max(4096).optional(),
    height: z.number().int().min(64).max(4096).optional(),
    aspect_ratio: z.string().regex(/^\d{1,3}:\d{1,3}$/, 'must be W:H, like 16:9').optional(),
    size: z.string().regex(/^\d{2,5}x\d{2,5}$/, 'must be WxH, like 1024x1024').optional(),
    num_outputs: z.number().int().min(1).max(10).default(1),
    num_inference_steps: z.number().int().min(1).max(150).optional(),
    guidance_scale: z.number().min(0).max(35).optional(),
    scheduler: z.enum(Object.keys(REPLICATE_SCHEDULERS) as [string, ...string[]], { error: () => `unknown scheduler; schedulers: ${Object.keys(REPLICATE_SCHEDULERS).join(', ')}` }).optional(),
    seed: z.number().int().min(0).max(MAX_SEED).optional(),
    image: fileInput('image-to-image: the image to start from').optional(),
    mask: fileInput('inpainting: white is repainted').optional(),
    prompt_strength: z.number().min(0).max(1).default(0.8).describe('With image: how much of it is repainted (1 = all).'),
    output_format: z.enum(['png', 'jpg', 'jpeg', 'webp']).default('png'),
    /** Replicate's SDXL LoRA fields: here the name of a LoRA file of LORA_DIR, and its weight. */
    lora_weights: z.string().max(128).optional(),
    lora_scale: z.number().min(-4).max(4).default(0.6),
    loras: LorasField,
});
export const ReplicateInput = ReplicateInputFields.meta({ id: 'ReplicateInput' });
export type ReplicateInput = z.infer<typeof ReplicateInput>;

/** Replicate's webhook event names; sdq's filter names (start, progress, completed) are what each maps to. */
export const REPLICATE_WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'] as const;

const predictionFields = {
  input: z.record(z.string(), z.unknown()),
  webhook: z.string().max(2048).optional(),
  webhook_events_filter: z
    .array(z.enum(REPLICATE_WEBHOOK_EVENTS, { error: () => `unknown event; events: ${REPLICATE_WEBHOOK_EVENTS.join(', ')}` }))
    .min(1)
    .max(4)
    .optional(),
  /** Accepted; sdq streams progress as server-sent events at /v1/jobs/{id}/events instead. */
  stream: z.boolean().optional(),
};

export const ReplicateModelPredictionRequest = z.object(predictionFields).meta({ id: 'ReplicateModelPredictionRequest' });
export const ReplicatePredictionRequest = z.object({ ...predictionFields, version: z.string().min(1).max(200) }).meta({ id: 'ReplicatePredictionRequest' });

export type ReplicateStatus = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';

export interface ReplicatePrediction {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
  logs: string;
  output: string[] | null;
  data_removed: boolean;
  error: string | null;
  source: 'api';
  status: ReplicateStatus;
  created_at: string;
  started_at?: string;
  completed_at?: string;
  urls: { get: string; cancel: string; stream: string };
  metrics?: { predict_time?: number; image_count?: number };
}

/** What a job made through the Replicate dialect keeps to answer as a prediction: its model, version and input. */
export interface ReplicateJobMeta {
  model: string;
  version: string;
  input: Record<string, unknown>;
}

/** Replicate's version id of an sdq model: 64 hex digits named by its engine (stable across restarts and processes). */
export function replicateVersionOf(engineId: string): string {
  return createHash('sha256').update(`sdq-replicate-version:${engineId}`).digest('hex');
}

const STATUS: Record<JobObject['status'], ReplicateStatus> = { queued: 'starting', running: 'processing', succeeded: 'succeeded', failed: 'failed', canceled: 'canceled' };

/**
 * A job as Replicate's prediction object. `base` is the API's public URL; `meta` what the Replicate
 * request said (a job made through another dialect is a prediction of `sdq/<engine>`).
 */
export function replicatePrediction(job: JobObject, meta: ReplicateJobMeta | undefined, base: string, outputs?: string[]): ReplicatePrediction {
  const self = `${base}/replicate/v1/predictions/${job.id}`;
  const status = STATUS[job.status];
  const progress = job.progress;
  const logs = progress && progress.steps ? `${progress.phase ? `${progress.phase}\n` : ''}step ${progress.step}/${progress.steps}` : '';
  const started = job.started_at ? Date.parse(job.started_at) : undefined;
  const finished = job.finished_at ? Date.parse(job.finished_at) : undefined;
  return {
    id: job.id,
    model: meta?.model ?? `sdq/${job.engine}`,
    version: meta?.version ?? replicateVersionOf(job.engine),
    input: meta?.input ?? {},
    logs,
    output: status === 'succeeded' ? (outputs ?? job.artifacts.map((a) => a.url)) : null,
    data_removed: false,
    error: status === 'failed' ? (job.error?.message ?? 'the prediction failed') : null,
    source: 'api',
    status,
    created_at: job.created_at,
    ...(job.started_at ? { started_at: job.started_at } : {}),
    ...(job.finished_at ? { completed_at: job.finished_at } : {}),
    urls: { get: self, cancel: `${self}/cancel`, stream: `${base}/v1/jobs/${job.id}/events` },
    ...(started !== undefined && finished !== undefined ? { metrics: { predict_time: (finished - started) / 1000, image_count: job.artifacts.length } } : {}),
  };
}

/** Replicate's error body (RFC 7807 as Replicate sends it): `{title, detail, status}`, and sdq's catalogue name as `code`. */
export interface ReplicateErrorBody {
  title: string;
  detail: string;
  status: number;
  code: string;
}
