/**
 * OpenAI's Images API on the same queue, workers, credits and limits as Stability's routes: POST
 * /v1/images/generations, /edits and /variations, and GET /v1/models, so the official `openai` SDK works with only baseURL and
 * apiKey set. A call is a job like any other (Idempotency-Key, limits, X-Webhook-URL or the account's
 * default webhook, the job API); it answers once the job ends, as OpenAI does, or 202 with the job object
 * when SYNC_WAIT runs out. Errors are `{error: {message, type, param, code}}` (errors.ts).
 */
import { type Request, type Response, Router } from 'express';
import { checkEngineSize, type EngineInfo, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import type { z } from 'zod';
import { type GenerationParams, OPENAI_SIZES, OpenAIImageEditRequest, OpenAIImageGenerationRequest, OpenAIImageVariationRequest, ServiceError } from '@sdq/contracts';
import { requireScope } from '../../auth';
import { jsonBody } from '../../body';
import { ConfigError } from '../../config';
import { resolvePrompts, checkSize, type GenerationDeps, repaintMask, requireFile, sizeForShape, submitAndWait } from '../../submission';
import type { JobInputs, NewJob } from '../../jobs.service';
import { jobCost } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import { parseBody } from '../../validate';
import { type CheckedImage, multipart, parseFormFields, readImage } from '../../uploads';

type OpenAIBody = Partial<z.infer<typeof OpenAIImageGenerationRequest>> & { n: number };

/** The model names the embedded engines answer to when OPENAI_MODELS does not name them. */
const EMBEDDED: Readonly<Record<string, string>> = { 'dall-e-2': 'tiny-sd', 'dall-e-3': 'tiny-sdxl', 'gpt-image-1': 'tiny-sd3' };
const DEFAULT_MODEL = 'dall-e-2';
/** OpenAI's mask is transparent where the image is edited; without one, the image's own transparent pixels are. */
const OPENAI_MASK = { marks: 'transparent', noAlpha: (field: string) => ({ field, message: `${field}: has no alpha channel; its transparent pixels are what gets edited` }) } as const;

/** How much of the image a variation keeps (Stability's image_strength). */
const VARIATION_IMAGE_STRENGTH = 0.5;

/**
 * Model name -> generation engine: the embedded defaults that exist, then OPENAI_MODELS. A setting that
 * names no engine, or an upscaler, stops start-up.
 */
export function openaiModels(settings: [string, string][], engines: Map<string, EngineInfo>, aliases: Map<string, string>): Map<string, GenerationEngineInfo> {
  const out = new Map<string, GenerationEngineInfo>();
  for (const [model, id] of Object.entries(EMBEDDED)) {
    const engine = engines.get(id);
    if (engine?.kind === 'generation') out.set(model, engine);
  }
  for (const [model, id] of settings) {
    const engine = engines.get(aliases.get(id) ?? id);
    if (!engine) throw new ConfigError(`Invalid environment: OPENAI_MODELS names ${model}=${id}, but ${id} is not an engine under MODELS_DIR`);
    if (engine.kind !== 'generation') throw new ConfigError(`Invalid environment: OPENAI_MODELS names ${model}=${id}, but ${id} is an upscale engine`);
    out.set(model, engine);
  }
  return out;
}

/** hd / high: 50 steps, low: 15; the rest the engine's default. */
function stepsFor(engine: GenerationEngineInfo, quality: string | undefined): number {
  if (quality === 'hd' || quality === 'high') return 50;
  if (quality === 'low') return 15;
  return engine.defaults.steps;
}

export function openaiRoutes(deps: GenerationDeps & { models: Map<string, GenerationEngineInfo> }): Router {
  const { config, engines, aliases, jobs, prices, models } = deps;
  const router = Router();

  const modelEngine = (model: string, mode: 'text-to-image' | 'image-to-image' | 'masking'): GenerationEngineInfo => {
    const engine = models.get(model) ?? engines.get(aliases.get(model) ?? model);
    if (!engine || engine.kind !== 'generation') {
      throw new ServiceError('not_found', `model: ${model} is not an image model here (models: ${[...new Set([...models.keys(), ...[...engines.values()].filter((e) => e.kind === 'generation').map((e) => e.id)])].join(', ')})`, { field: 'model' });
    }
    if (!engine.modes.includes(mode)) throw new ServiceError('bad_request', `model: ${model} cannot do ${mode} (it does ${engine.modes.join(', ')})`, { field: 'model' });
    return engine;
  };

  /** A size the engine takes is used as it is; another of OpenAI's sizes maps onto the engine's size of that shape. */
  const sizeOf = (engine: GenerationEngineInfo, size: string | undefined): { width: number; height: number } => {
    if (size === undefined || size === 'auto') return { width: engine.nativeWidth, height: engine.nativeHeight };
    const m = /^(\d{1,5})x(\d{1,5})$/.exec(size);
    const allowed = `allowed: auto, ${OPENAI_SIZES.join(', ')}${engine.sizes?.allowed ? `, or this model's own ${engine.sizes.allowed.join(', ')}` : ''}`;
    if (!m) throw new ServiceError('invalid_height_or_width', `size: ${JSON.stringify(size)} is not WxH (${allowed})`, { field: 'size' });
    const [width, height] = [Number(m[1]), Number(m[2])];
    if (width * height <= config.maxPixels && !checkEngineSize(engine, width, height)) return { width, height };
    if ((OPENAI_SIZES as readonly string[]).includes(size)) return sizeForShape(engine, width / height);
    throw new ServiceError('invalid_height_or_width', `size: ${size} is not a size this model takes (${allowed})`, { field: 'size' });
  };

  /** Queues the job, waits for it as OpenAI answers (synchronously), and answers its images. */
  const run = async (req: Request, res: Response, engine: GenerationEngineInfo, job: NewJob, inputs: JobInputs, body: OpenAIBody, prompt: string) => {
    const format = body.response_format ?? (/^gpt-image/.test(body.model ?? DEFAULT_MODEL) ? 'b64_json' : 'url');
    const done = await submitAndWait(deps, req, res, engine, { job, inputs, cost: jobCost(prices, engine, job) });
    if (!done) return;
    const { record, object, artifacts: stored } = done;
    const data = await Promise.all(
      object.artifacts.map(async (artifact, i) =>
        format === 'b64_json' ? { b64_json: (await jobs.readArtifact(stored[i].key)).toString('base64'), revised_prompt: prompt } : { url: artifact.url, revised_prompt: prompt },
      ),
    );
    const { params } = job as { params: GenerationParams };
    res.json({ created: Math.floor(record.created_at / 1000), data, background: 'opaque', output_format: params.outputFormat, quality: body.quality ?? 'auto', size: `${params.width}x${params.height}` });
  };

  const paramsOf = (req: Request, engine: GenerationEngineInfo, body: OpenAIBody, size: { width: number; height: number }, extra: Partial<GenerationParams> = {}): GenerationParams => {
    if (body.background === 'transparent') throw new ServiceError('bad_request', 'background: transparent is not available: sdq\'s engines draw opaque images (opaque or auto)', { field: 'background' });
    // A1111's <lora:name:weight> tags work in the prompt here too (the SDK has no field for them)
    return resolvePrompts(deps, req, engine, {
    prompts: [{ text: body.prompt ?? '', weight: 1 }],
    ...size,
    steps: stepsFor(engine, body.quality),
    cfgScale: engine.defaults.cfgScale,
    samples: body.n,
    seed: body.seed ?? 0,
    sampler: engine.defaults.sampler,
    outputFormat: body.output_format ?? 'png',
    ...extra,
    }, undefined, 'prompt');
  };

  router.post('/v1/images/generations', requireScope('generate'), rateLimit(deps.limiter), ...jsonBody('1mb'), async (req, res) => {
    const body = parseBody(OpenAIImageGenerationRequest, req.body);
    const engine = modelEngine(body.model ?? DEFAULT_MODEL, 'text-to-image');
    const size = sizeOf(engine, body.size);
    checkSize(size.width, size.height, config.maxPixels, engine);
    await run(req, res, engine, { kind: 'text-to-image', params: paramsOf(req, engine, body, size) }, {}, body, body.prompt);
  });

  const form = multipart({ files: ['image', 'image[]', 'mask'], maxFileBytes: config.maxUploadBytes, idleTimeoutMs: config.http.uploadIdleTimeoutMs, maxPerKey: config.http.maxUploadsPerKey, dir: config.http.uploadTmpDir });
  const fields = (req: Request) => {
    if (!req.multipart) throw new ServiceError('invalid_mime_type', `body: this endpoint takes multipart/form-data (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' });
    return parseFormFields(req.multipart.fields);
  };
  /** An edit's or variation's output: `size` as for generations, else the engine's size of the image's shape. */
  const sizeFor = (engine: GenerationEngineInfo, size: string | undefined, image: CheckedImage) => {
    const out = size === undefined ? sizeForShape(engine, image.width / image.height) : sizeOf(engine, size);
    checkSize(out.width, out.height, config.maxPixels, engine);
    return out;
  };

  /**
   * The image to edit: `image`, or gpt-image-1's `image[]` (what the SDK sends for an array) holding one
   * image; sdq edits one image, so a second is refused rather than dropped.
   */
  const editImage = async (req: Request): Promise<CheckedImage> => {
    const files = req.multipart!.files;
    if (files.has('image') && files.has('image[]')) throw new ServiceError('bad_request', 'image: send image or image[], not both (sdq edits one image)', { field: 'image' });
    const field = files.has('image[]') ? 'image[]' : 'image';
    return requireFile(await readImage(req, field, config.maxPixels), 'image');
  };

  router.post('/v1/images/edits', requireScope('generate'), rateLimit(deps.limiter), form, async (req, res) => {
    const body = parseBody(OpenAIImageEditRequest, fields(req));
    const image = await editImage(req);
    const mask = await readImage(req, 'mask', config.maxPixels);
    const engine = modelEngine(body.model ?? DEFAULT_MODEL, 'masking');
    const size = sizeFor(engine, body.size, image);
    await run(req, res, engine, { kind: 'masking', params: paramsOf(req, engine, body, size, { maskSource: 'MASK_IMAGE_WHITE' }) }, { initImage: image, maskImage: { data: await repaintMask(image, mask, OPENAI_MASK), contentType: 'image/png' } }, body, body.prompt);
  });

  router.post('/v1/images/variations', requireScope('generate'), rateLimit(deps.limiter), form, async (req, res) => {
    const body = parseBody(OpenAIImageVariationRequest, fields(req));
    const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
    if (req.multipart?.files.get('mask')) throw new ServiceError('bad_request', 'mask: variations take the image alone', { field: 'mask' });
    const engine = modelEngine(body.model ?? DEFAULT_MODEL, 'image-to-image');
    const size = sizeFor(engine, body.size, image);
    // no prompt: the image alone steers it; half of it kept
    await run(req, res, engine, { kind: 'image-to-image', params: paramsOf(req, engine, body, size, { imageStrength: VARIATION_IMAGE_STRENGTH }) }, { initImage: image }, body, '');
  });

  router.get('/v1/models', (_req, res) => {
    const names = [...new Set([...models.keys(), ...[...engines.values()].filter((e) => e.kind === 'generation').map((e) => e.id)])];
    res.json({ object: 'list', data: names.map((id) => ({ id, object: 'model', created: 0, owned_by: 'sdq' })) });
  });
  return router;
}
