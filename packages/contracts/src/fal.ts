/**
 * fal's API as sdq takes it (`/fal`): the input and output of fal's Stable Diffusion apps, and the
 * queue's answers (submit, status), so that `@fal-ai/client` and the AI SDK's fal provider work unchanged.
 */
import { z } from 'zod';
import type { JobObject } from './jobs';
import { MAX_PROMPT_LENGTH, MAX_SEED } from './requests';
import { LORA_WEIGHT_MAX, LORA_WEIGHT_MIN, MAX_LORAS } from './lora-tags';

/** fal's named image sizes: each maps onto the engine's size of the same shape. */
export const FAL_IMAGE_SIZES: Readonly<Record<string, { width: number; height: number }>> = Object.freeze({
  square_hd: { width: 1024, height: 1024 },
  square: { width: 512, height: 512 },
  portrait_4_3: { width: 768, height: 1024 },
  portrait_16_9: { width: 576, height: 1024 },
  landscape_4_3: { width: 1024, height: 768 },
  landscape_16_9: { width: 1024, height: 576 },
});

/**
 * The input of fal's Stable Diffusion apps (fast-sdxl, stable-diffusion-v3-medium, ...). Fields sdq does
 * not use (expand_prompt, sync_mode, ...) are accepted and ignored. `enable_safety_checker: false` turns
 * the checker off only for accounts whose safety mode is off or flag (it never lets an image past a
 * blur, black or refuse the operator chose).
 */
export const FalInput = z
  .object({
    prompt: z.string().max(MAX_PROMPT_LENGTH).default(''),
    negative_prompt: z.string().max(MAX_PROMPT_LENGTH).optional(),
    image_size: z
      .union([
        z.enum(Object.keys(FAL_IMAGE_SIZES) as [string, ...string[]], { error: () => `unknown size; sizes: ${Object.keys(FAL_IMAGE_SIZES).join(', ')}, or {width, height}` }),
        z.object({ width: z.number().int().min(64).max(4096), height: z.number().int().min(64).max(4096) }),
      ])
      .optional(),
    num_inference_steps: z.number().int().min(1).max(150).optional(),
    guidance_scale: z.number().min(0).max(35).optional(),
    seed: z.number().int().min(0).max(MAX_SEED).optional(),
    num_images: z.number().int().min(1).max(10).default(1),
    enable_safety_checker: z.boolean().default(true),
    format: z.enum(['jpeg', 'png']).default('jpeg'),
    output_format: z.enum(['jpeg', 'png']).optional(),
    /** fal's LoRA list; `path` names a LoRA file of LORA_DIR (sdq fetches no URL). */
    loras: z
      .array(z.object({ path: z.string().min(1).max(128), scale: z.number().min(LORA_WEIGHT_MIN).max(LORA_WEIGHT_MAX).default(1) }))
      .max(MAX_LORAS)
      .optional(),
  })
  .meta({ id: 'FalInput' });
export type FalInput = z.infer<typeof FalInput>;

export const FalOutput = z
  .object({
    images: z.array(z.object({ url: z.string(), width: z.number().int(), height: z.number().int(), content_type: z.string() })),
    seed: z.number().int(),
    timings: z.object({ inference: z.number() }),
    has_nsfw_concepts: z.array(z.boolean()),
    prompt: z.string(),
  })
  .meta({ id: 'FalOutput' });

/** fal's error body: `detail` as fal answers, `message` as the AI SDK's fal provider reads it, and sdq's catalogue name. */
export interface FalErrorBody {
  detail: string;
  message: string;
  code: string;
}

/** fal's output for a finished job (its images as the job object lists them). */
export function falOutput(job: JobObject, prompt: string): z.infer<typeof FalOutput> {
  const started = job.started_at ? Date.parse(job.started_at) : Date.parse(job.created_at);
  return {
    images: job.artifacts.map((a) => ({ url: a.url, width: a.width, height: a.height, content_type: a.content_type })),
    seed: job.artifacts[0]?.seed ?? 0,
    timings: { inference: job.finished_at ? (Date.parse(job.finished_at) - started) / 1000 : 0 },
    has_nsfw_concepts: job.artifacts.map((a) => a.content_filtered),
    prompt,
  };
}

/** What a fal request keeps on its job record: its app and prompt. */
export interface FalJobMeta {
  app: string;
  prompt: string;
}

/**
 * The body of fal's webhook (`fal_webhook`), sent when a request ends: `{request_id, gateway_request_id,
 * status: OK, payload: <output>}`, or `status: ERROR` with `error` and a null payload.
 */
export function falWebhookBody(job: JobObject, meta: FalJobMeta) {
  const ok = job.status === 'succeeded';
  return {
    request_id: job.id,
    gateway_request_id: job.id,
    status: ok ? 'OK' : 'ERROR',
    payload: ok ? falOutput(job, meta.prompt) : null,
    ...(ok ? {} : { error: job.status === 'canceled' ? 'the request was canceled' : (job.error?.message ?? 'the request failed') }),
  };
}
