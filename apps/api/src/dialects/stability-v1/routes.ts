/**
 * Stability v1 generation endpoints: validate, enqueue, then answer as Stability does (sync), or with
 * the job object (`Prefer: respond-async`, `Prefer: wait=N`, or a sync wait that ran out).
 */
import { type Request, type Response, Router } from 'express';
import type { z } from 'zod';
import { type EngineInfo, FAMILIES, type FamilyInput, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import {
  CONTENT_TYPES,
  type GenerationParams,
  ImageToImageRequest,
  MaskingRequest,
  type OutputFormat,
  ServiceError,
  TERMINAL_STATUSES,
  TextToImageRequest,
  UpscaleRequest,
} from '@sdq/contracts';
import { requireScope } from '../../auth';
import { jsonBody } from '../../body';
import type { JobInputs, JobsService, JobWebhook, NewJob } from '../../jobs.service';
import { dryRun, jobCost } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import type { JobRecord } from '../../store';
import { parseBody } from '../../validate';
import { type CheckedImage, type ImageField, multipart, parseFormFields, readImage, repeatedField } from '../../uploads';
import { animationHandler } from './animation';
import { resolvePrompts, hiresParams, applyStyle, checkSize, checkWebhook, endedAsError, formEventsFilter, type GenerationDeps, isDryRun, parsePrefer, requireFile, submitJob, webhookOf } from '../../submission';

const ACCEPTABLE = ['application/json', 'image/png', 'image/jpeg', 'image/webp'];

/** What the client asked to receive: JSON (default) or the bytes of one image. */
export function negotiate(req: Request): { json: boolean; format: OutputFormat } {
  const type = req.accepts(ACCEPTABLE);
  if (!type) throw new ServiceError('invalid_accept', `Accept: none of ${ACCEPTABLE.join(', ')} is acceptable (got ${req.headers.accept})`);
  if (type === 'application/json') return { json: true, format: 'png' };
  return { json: false, format: type.slice('image/'.length) as OutputFormat };
}

/** An init image decides the output size when width/height are not given: it must then be valid. */
function sizeFromImage(image: CheckedImage, maxPixels: number): { width: number; height: number } {
  const { width, height } = image;
  if (width % 64 !== 0 || height % 64 !== 0 || width < 128 || height < 128) {
    throw new ServiceError('invalid_image_dimensions', `init_image: ${width}x${height} must be multiples of 64 and at least 128 (or give width and height)`, { field: 'init_image' });
  }
  if (width * height > maxPixels) {
    throw new ServiceError('invalid_image_dimensions', `init_image: ${width}x${height} is over the maximum of ${maxPixels} pixels`, { field: 'init_image' });
  }
  return { width, height };
}

/** The kinds of Stability's own routes (animation.ts serves sdq's animation route). */
type Kind = Exclude<NewJob['kind'], 'animation'>;

export function generationRoutes(deps: GenerationDeps): Router {
  const { config, engines, aliases, jobs, prices, credits } = deps;
  const router = Router();

  const engineFor = (req: Request, kind: Kind): EngineInfo => {
    const requested = String(req.params.engine_id);
    // An alias reaches its engine: the job, its queue and its price are the engine's.
    const engine = engines.get(aliases.get(requested) ?? requested);
    if (!engine) throw new ServiceError('not_found', `engine ${req.params.engine_id} not found (GET /v1/engines/list lists them)`);
    const wanted = kind === 'upscale' ? 'upscale' : 'generation';
    if (engine.kind !== wanted) throw new ServiceError('bad_request', `engine ${engine.id} is a ${engine.kind} engine and cannot serve ${kind}`);
    if (engine.kind === 'generation' && !engine.family) {
      throw new ServiceError('engine_unavailable', `engine ${engine.id} is a ${engine.pipelineClass} folder, a family sdq does not serve (it serves ${FAMILIES.map((f) => f.id).join(', ')})`);
    }
    if (kind === 'enhance' || !engine.modes.includes(kind)) throw new ServiceError('bad_request', `engine ${engine.id} cannot do ${kind} (it does ${engine.modes.join(', ')}; image-to-image and masking need a vae_encoder)`);
    return engine;
  };

  /** sdq's hires_fix field as the job's second pass: its size (given, or scale times the first pass's), upscaler, steps, strength, sampler. */
  const hiresFixOf = (engine: GenerationEngineInfo, spec: NonNullable<z.infer<typeof TextToImageRequest>['hires_fix']>, width: number, height: number): GenerationParams['hires'] => {
    const field = { field: 'hires_fix' };
    if ((spec.width === undefined) !== (spec.height === undefined)) throw new ServiceError('invalid_height_or_width', 'hires_fix: give width and height together, or scale', field);
    if (spec.width === undefined && spec.scale === undefined) throw new ServiceError('bad_request', 'hires_fix: give width and height, or scale', field);
    if (spec.width !== undefined && spec.scale !== undefined) throw new ServiceError('bad_request', 'hires_fix: give width and height, or scale, not both', field);
    if (spec.sampler !== undefined && engine.samplers && !engine.samplers.includes(spec.sampler)) {
      throw new ServiceError('invalid_sampler', `hires_fix.sampler: ${spec.sampler} cannot be used with ${engine.familyName ?? engine.id} engines; valid samplers: ${engine.samplers.join(', ')}`, { field: 'hires_fix.sampler' });
    }
    const target = spec.scale !== undefined ? { width: Math.round(width * spec.scale), height: Math.round(height * spec.scale) } : { width: spec.width!, height: spec.height! };
    const label: Record<string, string | number> = spec.scale !== undefined ? { 'Hires upscale': spec.scale } : { 'Hires resize': `${target.width}x${target.height}` };
    return hiresParams(engines, engine, config.maxPixels, { ...target, upscaler: spec.upscaler, ...(spec.steps ? { steps: spec.steps } : {}), denoisingStrength: spec.strength, ...(spec.sampler ? { sampler: spec.sampler } : {}), label }, 'hires_fix.upscaler');
  };

  /** Builds the job from the request; everything the client got wrong is thrown here, before any storage. */
  const build = async (
    req: Request,
    kind: Kind,
    engine: EngineInfo,
    format: OutputFormat,
  ): Promise<{ job: NewJob; inputs: JobInputs; samples: number; webhook?: JobWebhook }> => {
    // engineFor has matched the engine's kind to the route's
    const generation = (): GenerationEngineInfo => {
      if (engine.kind !== 'generation') throw new Error(`engine ${engine.id} is not a generation engine`);
      return engine;
    };
    if (kind === 'text-to-image') {
      const engine = generation();
      if (!req.is('application/json')) throw new ServiceError('invalid_mime_type', `body: this endpoint takes application/json (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' });
      const body = parseBody(TextToImageRequest, req.body);
      const width = body.width ?? engine.nativeWidth;
      const height = body.height ?? engine.nativeHeight;
      checkSize(width, height, config.maxPixels, engine);
      const params = resolvePrompts(deps, req, engine, generationParams(engine, req.body as Record<string, unknown>, body, width, height, format), body.loras);
      if (body.hires_fix) params.hires = hiresFixOf(engine, body.hires_fix, width, height);
      return { job: { kind, params }, inputs: {}, samples: body.samples, webhook: webhookOf(body) };
    }
    const upload = req.multipart!;
    const fields = parseFormFields(upload.fields);
    // parseFormFields keeps one value per field; the filter may come as several.
    const filter = formEventsFilter(repeatedField(upload.fields, 'webhook_events_filter'));
    if (filter !== undefined) fields.webhook_events_filter = filter;
    if (kind === 'upscale') {
      const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
      const body = parseBody(UpscaleRequest, { ...fields, image: image.data });
      if (body.width !== undefined && body.height !== undefined) throw new ServiceError('invalid_height_or_width', 'width, height: give one of them, not both', { field: 'width' });
      const scale = (engine.kind === 'upscale' ? engine.scale : undefined) ?? 2;
      const outW = body.width ?? (body.height ? Math.round((image.width * body.height) / image.height) : image.width * scale);
      const outH = body.height ?? Math.round((image.height * outW) / image.width);
      // the upscaler enlarges by its own factor at most, and never shrinks: known here, so never a failed job
      for (const [name, v, side] of [['width', outW, image.width], ['height', outH, image.height]] as const) {
        if (v < side || v > side * scale) {
          throw new ServiceError('invalid_height_or_width', `${name}: must be from ${side} to ${side * scale} for ${engine.id}'s x${scale} upscale of a ${image.width}x${image.height} image (got ${v})`, { field: name });
        }
      }
      if (outW * outH > config.maxPixels * 4) {
        throw new ServiceError('invalid_pixel_count', `output: ${outW}x${outH} is over the upscale maximum of ${config.maxPixels * 4} pixels`);
      }
      return { job: { kind, params: { width: body.width, height: body.height, outputFormat: format } }, inputs: { image }, samples: 1, webhook: webhookOf(body) };
    }
    const gen = generation();
    const init = requireFile(await readImage(req, 'init_image', config.maxPixels), 'init_image');
    const mask = kind === 'masking' ? await readImage(req, 'mask_image', config.maxPixels) : undefined;
    const body =
      kind === 'masking'
        ? parseBody(MaskingRequest, { ...fields, init_image: init.data, mask_image: mask?.data })
        : parseBody(ImageToImageRequest, { ...fields, init_image: init.data });
    if (body.width === undefined !== (body.height === undefined)) {
      throw new ServiceError('invalid_height_or_width', 'width, height: give both or neither (neither = the init image\'s size)', { field: 'width' });
    }
    const size = body.width && body.height ? { width: body.width, height: body.height } : sizeFromImage(init, config.maxPixels);
    checkSize(size.width, size.height, config.maxPixels, engine);
    const params = resolvePrompts(deps, req, gen, generationParams(gen, fields, body, size.width, size.height, format), body.loras);
    if ('init_image_mode' in body) {
      params.imageStrength = body.init_image_mode === 'STEP_SCHEDULE' ? 1 - body.step_schedule_start : body.image_strength;
    }
    if ('mask_source' in body) {
      params.maskSource = body.mask_source;
      if (body.mask_source === 'INIT_IMAGE_ALPHA') {
        if (!init.hasAlpha) throw new ServiceError('invalid_mask_image', 'init_image: has no alpha channel, which mask_source INIT_IMAGE_ALPHA needs', { field: 'init_image' });
      } else {
        if (!mask) throw new ServiceError('invalid_mask_image', `mask_image: is required with mask_source ${body.mask_source}`, { field: 'mask_image' });
        if (mask.width !== init.width || mask.height !== init.height) {
          throw new ServiceError('invalid_mask_image', `mask_image: is ${mask.width}x${mask.height}, expected the init image's ${init.width}x${init.height}`, { field: 'mask_image' });
        }
      }
    }
    return { job: { kind, params }, inputs: { initImage: init, maskImage: mask }, samples: body.samples, webhook: webhookOf(body) };
  };

  const handle = (kind: Kind) => async (req: Request, res: Response) => {
    const engine = engineFor(req, kind);
    const accept = negotiate(req);
    const prefer = parsePrefer(req.get('prefer'));
    const { job, inputs, samples, webhook } = await build(req, kind, engine, accept.format);
    if (!accept.json && samples > 1) {
      throw new ServiceError('invalid_samples', `samples: ${samples} images cannot be sent as ${req.headers.accept}; ask for application/json or samples=1`, { field: 'samples' });
    }
    const cost = jobCost(prices, engine, job);
    if (isDryRun(req)) {
      await checkWebhook(config, webhook);
      res.json(dryRun(engine.id, job, cost, await credits.balance(req.accountId!)));
      return;
    }
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs, webhook, cost });
    if (repeated) res.set('Idempotent-Replayed', 'true');

    if (prefer.async || prefer.wait !== undefined) {
      const snapshot = prefer.wait !== undefined ? await jobs.waitForEnd(record, prefer.wait * 1000) : undefined;
      // a job queued just now (not a replay, not waited for) is read in one round trip
      const object = snapshot || repeated ? await jobs.describe(record, snapshot) : await jobs.describeQueued(record);
      res.set('Preference-Applied', prefer.applied!);
      res.set('Location', object.urls.self);
      res.status(TERMINAL_STATUSES.has(object.status) ? 200 : 202).json(object);
      return;
    }
    const snapshot = await jobs.waitForEnd(record, config.syncWait * 1000);
    await answerStability(res, jobs, record, snapshot, accept);
  };

  const json = jsonBody('1mb');
  const form = (files: ImageField[]) => multipart({ files, maxFileBytes: config.maxUploadBytes, idleTimeoutMs: config.http.uploadIdleTimeoutMs, maxPerKey: config.http.maxUploadsPerKey, dir: config.http.uploadTmpDir });
  // Scope, then the rate limit, both before the body is read.
  const guard = [requireScope('generate'), rateLimit(deps.limiter)];
  router.post('/v1/generation/:engine_id/text-to-image', guard, json, handle('text-to-image'));
  router.post('/v1/generation/:engine_id/image-to-image', guard, form(['init_image']), handle('image-to-image'));
  router.post('/v1/generation/:engine_id/image-to-image/masking', guard, form(['init_image', 'mask_image']), handle('masking'));
  router.post('/v1/generation/:engine_id/image-to-image/upscale', guard, form(['image']), handle('upscale'));
  router.post('/v1/generation/:engine_id/animation', guard, json, animationHandler(deps, generationParams));
  return router;
}

/**
 * The job's parameters: what the request gave, else the engine's manifest defaults, else the API's.
 * `raw` is the body before the schema filled in its defaults, to tell a given value from a default.
 */
export function generationParams(
  engine: GenerationEngineInfo,
  raw: Record<string, unknown> | undefined,
  body: z.infer<typeof TextToImageRequest>,
  width: number,
  height: number,
  outputFormat: OutputFormat,
): GenerationParams {
  const given = (field: string) => raw?.[field] !== undefined;
  const m = engine.manifest;
  const sampler = body.sampler ?? m.sampler;
  if (sampler !== undefined && engine.samplers && !engine.samplers.includes(sampler)) {
    throw new ServiceError('invalid_sampler', `sampler: ${sampler} cannot be used with ${engine.familyName ?? engine.id} engines; valid samplers: ${engine.samplers.join(', ')}`, { field: 'sampler' });
  }
  // the family's own inputs reach only the engines whose description takes them
  const takes = (input: FamilyInput) => engine.inputs.includes(input);
  return {
    prompts: applyStyle(engine, body.text_prompts, body.style_preset),
    width,
    height,
    // engine.defaults: the manifest's, else the family's reference settings (SD3: 28 steps).
    steps: given('steps') ? body.steps : engine.defaults.steps,
    cfgScale: given('cfg_scale') ? body.cfg_scale : engine.defaults.cfgScale,
    samples: body.samples,
    seed: body.seed,
    sampler,
    outputFormat,
    stylePreset: body.style_preset,
    ...(takes('prompt_2') && body.prompt_2 !== undefined ? { prompt2: body.prompt_2 } : {}),
    ...(takes('prompt_3') && body.prompt_3 !== undefined ? { prompt3: body.prompt_3 } : {}),
    ...(takes('micro_conditioning') && (body.original_width !== undefined || body.original_height !== undefined)
      ? { originalSize: { width: body.original_width ?? width, height: body.original_height ?? height } }
      : {}),
    ...(takes('micro_conditioning') && (body.crop_top || body.crop_left) ? { cropTopLeft: { top: body.crop_top, left: body.crop_left } } : {}),
  };
}

/** A finished sync request, answered as Stability does; an unfinished one gets the job object (202). */
async function answerStability(
  res: Response,
  jobs: JobsService,
  record: JobRecord,
  snapshot: Awaited<ReturnType<JobsService['waitForEnd']>>,
  accept: { json: boolean; format: OutputFormat },
): Promise<void> {
  const object = await jobs.describe(record, snapshot);
  if (!TERMINAL_STATUSES.has(object.status)) {
    res.set('Location', object.urls.self).status(202).json(object);
    return;
  }
  const failure = endedAsError(record, object);
  if (failure) throw failure;
  const stored = snapshot!.result!.artifacts;
  const images = await Promise.all(stored.map((a) => jobs.readArtifact(a.key)));
  if (accept.json) {
    res.json({ artifacts: stored.map((a, i) => ({ base64: images[i].toString('base64'), seed: a.seed, finishReason: a.finish_reason })) });
    return;
  }
  res
    .status(200)
    .set({ 'Content-Type': stored[0].content_type || CONTENT_TYPES[accept.format], Seed: String(stored[0].seed), 'Finish-Reason': stored[0].finish_reason })
    .send(images[0]);
}

