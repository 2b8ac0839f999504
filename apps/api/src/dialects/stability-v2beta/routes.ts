/**
 * Stability's v2beta "Stable Image" API on the same queue, workers, credits and limits as v1: multipart
 * requests, `accept: image/*` for the bytes (with `finish-reason` and `seed` headers) or
 * `application/json` for `{image, finish_reason, seed}`, errors as `{id, name, errors}`. Each call is a
 * job like any other; which engine serves each service is the operator's (V2BETA_ENGINES).
 */
import { type Request, type Response, Router } from 'express';
import sharp from 'sharp';
import type { z } from 'zod';
import { checkEngineSize, type EngineInfo, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import {
  type AspectRatio,
  type GenerationParams,
  SD3_MODEL_REROUTES,
  ServiceError,
  TERMINAL_STATUSES,
  V2BETA_SERVICES,
  V2BETA_UNSUPPORTED,
  type V2BetaService,
  V2GenerateRequest,
  V2InpaintRequest,
  V2ConservativeRequest,
  V2CreativeRequest,
  V2OutpaintRequest,
  V2Sd3Request,
  V2UpscaleFastRequest,
  type LoraUse,
} from '@sdq/contracts';
import { requireScope } from '../../auth';
import { ConfigError } from '../../config';
import { resolvePrompts, applyStyle, checkSize, checkWebhook, endedAsError, repaintMask, formEventsFilter, type GenerationDeps, isDryRun, parsePrefer, requireFile, sizeForShape, submitJob, webhookOf } from '../../submission';
import type { JobInputs, JobsService, NewJob } from '../../jobs.service';
import { dryRun } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import { parseBody } from '../../validate';
import type { JobRecord } from '../../store';
import { type CheckedImage, type ImageField, multipart, parseFormFields, readImage, repeatedField } from '../../uploads';

/** The fields every v2beta call that generates shares. */
interface CallFields {
  prompt: string;
  negative_prompt?: string;
  loras?: LoraUse[];
  seed: number;
  output_format: GenerationParams['outputFormat'];
  style_preset?: string;
  cfg_scale?: number;
}

type WebhookFields = { webhook?: string; webhook_events_filter?: string[] };

/** The engine each service falls back to when V2BETA_ENGINES does not name one, if that engine is here. */
const EMBEDDED: Readonly<Record<V2BetaService, string | undefined>> = {
  core: 'tiny-sd',
  ultra: 'tiny-sdxl',
  'sd3.5-large': 'tiny-sd3',
  'sd3.5-large-turbo': 'tiny-sd3',
  'sd3.5-medium': 'tiny-sd3',
  'sd3.5-flash': 'tiny-sd3',
  'upscale-fast': 'tiny-upscaler-x2',
  'upscale-conservative': 'tiny-sd',
  'upscale-creative': 'tiny-sd',
  inpaint: 'tiny-sd',
  outpaint: 'tiny-sd',
  erase: 'tiny-sd',
};

/**
 * The engine serving each v2beta service: V2BETA_ENGINES, then the embedded defaults that exist. A
 * setting that names an unknown service or engine stops start-up, as ENGINE_ALIASES does.
 */
export function v2betaEngines(settings: [string, string][], engines: Map<string, EngineInfo>, aliases: Map<string, string>): Map<V2BetaService, EngineInfo> {
  const out = new Map<V2BetaService, EngineInfo>();
  for (const service of V2BETA_SERVICES) {
    const fallback = EMBEDDED[service];
    if (fallback && engines.has(fallback)) out.set(service, engines.get(fallback)!);
  }
  for (const [service, id] of settings) {
    if (!(V2BETA_SERVICES as readonly string[]).includes(service)) {
      throw new ConfigError(`Invalid environment: V2BETA_ENGINES names the service ${service}; services are ${V2BETA_SERVICES.join(', ')}`);
    }
    const engine = engines.get(aliases.get(id) ?? id);
    if (!engine) throw new ConfigError(`Invalid environment: V2BETA_ENGINES names ${service}=${id}, but ${id} is not an engine under MODELS_DIR`);
    // fast is the upscaler's; conservative and creative repaint tiles with a generation engine
    const upscaler = service === 'upscale-fast';
    if ((engine.kind === 'upscale') !== upscaler) {
      throw new ConfigError(`Invalid environment: V2BETA_ENGINES names ${service}=${id}, but ${id} is a ${engine.kind} engine and ${service} needs ${upscaler ? 'an upscale' : 'a generation'} engine`);
    }
    out.set(service as V2BetaService, engine);
  }
  return out;
}

const ratioOf = (aspect: AspectRatio) => {
  const [w, h] = aspect.split(':').map(Number);
  return w / h;
};


/**
 * `accept`: image/* (the default, or any one image type) for the bytes, application/json for JSON.
 * Stability also documents `application/json; type=image/png` (JSON carrying a PNG), which Express's
 * negotiation reads as no match because of the parameter: the media type alone decides here.
 */
function wantsJson(req: Request): boolean {
  const type = req.accepts(['image/*', 'image/png', 'image/jpeg', 'image/webp', 'application/json']);
  if (type) return type === 'application/json';
  const ranges = (req.headers.accept ?? '').split(',').map((range) => range.split(';')[0].trim().toLowerCase());
  if (ranges.includes('application/json')) return true;
  throw new ServiceError('invalid_accept', `accept: must be image/* or application/json (got ${req.headers.accept})`, { field: 'accept' });
}

/** Answers a v2beta job: the image or JSON once it succeeded, 202 in-progress while it runs, else its error. */
async function answer(res: Response, jobs: JobsService, record: JobRecord, snapshot: Awaited<ReturnType<JobsService['waitForEnd']>>, json: boolean): Promise<void> {
  const object = await jobs.describe(record, snapshot);
  if (!TERMINAL_STATUSES.has(object.status)) {
    res.status(202).set('Location', `/v2beta/results/${record.id}`).json({ id: record.id, status: 'in-progress' });
    return;
  }
  const failure = endedAsError(record, object, 'generation');
  if (failure) throw failure;
  const stored = (snapshot ?? (await jobs.snapshot(record)))!.result!.artifacts[0];
  const image = await jobs.readArtifact(stored.key);
  if (json) {
    res.json({ image: image.toString('base64'), finish_reason: stored.finish_reason, seed: stored.seed });
    return;
  }
  res.status(200).set({ 'Content-Type': stored.content_type || 'image/png', 'Finish-Reason': stored.finish_reason, Seed: String(stored.seed) }).send(image);
}

export function v2betaRoutes(deps: GenerationDeps & { services: Map<V2BetaService, EngineInfo> }): Router {
  const { config, jobs, prices, credits, services } = deps;
  const router = Router();

  // enhance is image-to-image tile by tile
  const engineFor = (service: V2BetaService, kind: Exclude<NewJob['kind'], 'animation'>): EngineInfo => {
    const mode = kind === 'enhance' ? 'image-to-image' : kind;
    const engine = services.get(service);
    if (!engine) throw new ServiceError('not_found', `v2beta ${service}: no engine serves it on this server (the operator sets V2BETA_ENGINES=${service}=<engine>)`);
    if (!engine.modes.includes(mode)) throw new ServiceError('bad_request', `v2beta ${service}: its engine ${engine.id} cannot do ${mode} (it does ${engine.modes.join(', ')})`);
    return engine;
  };
  /** The engine of a service that generates (every one but the fast upscale). */
  const generationFor = (service: V2BetaService, kind: Exclude<NewJob['kind'], 'animation'>): GenerationEngineInfo => {
    const engine = engineFor(service, kind);
    if (engine.kind !== 'generation') throw new ServiceError('bad_request', `v2beta ${service}: its engine ${engine.id} is an upscale engine`);
    return engine;
  };

  /** Prices, queues and answers a built job (asynchronous: `{id}` at once); the dry run prices it only. */
  // `form` is the call's validated fields: each route's schema takes the webhook fields too.
  const run = async (req: Request, res: Response, service: V2BetaService, engine: EngineInfo, job: NewJob, inputs: JobInputs, form: WebhookFields, async = false) => {
    const json = wantsJson(req);
    const webhook = webhookOf(form);
    const entry = `v2beta/${service}`;
    const cost =
      job.kind === 'upscale' || job.kind === 'enhance'
        ? prices.upscale(entry, { samples: 1 })
        : prices.generation(entry, { width: job.params.width, height: job.params.height, steps: job.params.steps, samples: 1, loras: job.params.loras?.length ?? 0 });
    if (isDryRun(req)) {
      await checkWebhook(config, webhook);
      // the size the aspect ratio (or the image) came to, which the v2beta fields do not say
      const size = job.kind === 'upscale' ? {} : { width: job.params.width, height: job.params.height };
      res.json({ ...dryRun(engine.id, job, cost, await credits.balance(req.accountId!)), ...size });
      return;
    }
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs, cost, webhook });
    if (repeated) res.set('Idempotent-Replayed', 'true');
    if (async) {
      // as Stability's creative upscale: the id to poll GET /v2beta/results/{id} with
      res.json({ id: record.id });
      return;
    }
    // sdq's addition: Prefer: respond-async answers 202 {id, status} at once, for GET /v2beta/results/{id}
    const wait = parsePrefer(req.get('prefer')).async ? 0 : config.syncWait * 1000;
    await answer(res, jobs, record, wait ? await jobs.waitForEnd(record, wait) : undefined, json);
  };

  /**
   * A call's generation parameters: its prompt and negative prompt (with the engine's style text), its
   * seed, format and guidance, the engine's steps and sampler, one image; `extra` adds the mode's own.
   */
  const paramsOf = (req: Request, engine: GenerationEngineInfo, body: CallFields, size: { width: number; height: number }, extra: Partial<GenerationParams> = {}): GenerationParams => {
    const prompts = [{ text: body.prompt, weight: 1 }, ...(body.negative_prompt?.trim() ? [{ text: body.negative_prompt, weight: -1 }] : [])];
    return resolvePrompts(deps, req, engine, {
      prompts: applyStyle(engine, prompts, body.style_preset),
      ...size,
      steps: engine.defaults.steps,
      cfgScale: body.cfg_scale ?? engine.defaults.cfgScale,
      samples: 1,
      seed: body.seed,
      sampler: engine.defaults.sampler,
      outputFormat: body.output_format,
      stylePreset: body.style_preset,
      ...extra,
    }, body.loras);
  };

  /** A size the engine takes as it is, else the engine's size of that shape (the worker resizes to it). */
  const ownOrNearest = (engine: GenerationEngineInfo, size: { width: number; height: number }) => {
    if (size.width * size.height <= config.maxPixels && !checkEngineSize(engine, size.width, size.height)) return size;
    return sizeForShape(engine, size.width / size.height);
  };

  const generation = (req: Request, service: V2BetaService, engine: GenerationEngineInfo, body: z.infer<typeof V2GenerateRequest>, image: CheckedImage | undefined): { job: NewJob; inputs: JobInputs } => {
    const kind = image ? 'image-to-image' : 'text-to-image';
    if (image && body.strength === undefined) throw new ServiceError('bad_request', 'strength: is required with image (0 keeps the image, 1 ignores it)', { field: 'strength' });
    const { width, height } = sizeForShape(engine, image ? image.width / image.height : ratioOf(body.aspect_ratio as AspectRatio));
    checkSize(width, height, config.maxPixels, engine);
    const params = paramsOf(req, engine, body, { width, height }, image ? { imageStrength: 1 - body.strength! } : {});
    return { job: { kind, params }, inputs: image ? { initImage: image } : {} };
  };

  const form = (files: ImageField[]) => multipart({ files, maxFileBytes: config.maxUploadBytes, idleTimeoutMs: config.http.uploadIdleTimeoutMs, maxPerKey: config.http.maxUploadsPerKey, dir: config.http.uploadTmpDir });
  const guard = [requireScope('generate'), rateLimit(deps.limiter)];
  const fields = (req: Request) => {
    if (!req.multipart) throw new ServiceError('invalid_mime_type', `body: v2beta endpoints take multipart/form-data (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' });
    const parsed = parseFormFields(req.multipart.fields);
    const filter = formEventsFilter(repeatedField(req.multipart.fields, 'webhook_events_filter'));
    if (filter !== undefined) parsed.webhook_events_filter = filter;
    return parsed;
  };

  for (const service of ['core', 'ultra'] as const) {
    router.post(`/v2beta/stable-image/generate/${service}`, guard, form(service === 'ultra' ? ['image'] : []), async (req: Request, res: Response) => {
      const body = parseBody(V2GenerateRequest, fields(req));
      const image = service === 'ultra' ? await readImage(req, 'image', config.maxPixels) : undefined;
      const engine = generationFor(service, image ? 'image-to-image' : 'text-to-image');
      const { job, inputs } = generation(req, service, engine, body, image);
      await run(req, res, service, engine, job, inputs, body);
    });
  }

  router.post('/v2beta/stable-image/generate/sd3', guard, form(['image']), async (req: Request, res: Response) => {
    const body = parseBody(V2Sd3Request, fields(req));
    const model = (Object.hasOwn(SD3_MODEL_REROUTES, body.model) ? SD3_MODEL_REROUTES[body.model] : body.model) as V2BetaService;
    const image = await readImage(req, 'image', config.maxPixels);
    if (body.mode === 'image-to-image' && !image) throw new ServiceError('bad_request', 'image: is required with mode image-to-image', { field: 'image' });
    if (body.mode === 'text-to-image' && image) throw new ServiceError('bad_request', 'image: is only taken with mode image-to-image', { field: 'image' });
    const engine = generationFor(model, image ? 'image-to-image' : 'text-to-image');
    const { job, inputs } = generation(req, model, engine, body, image);
    await run(req, res, model, engine, job, inputs, body);
  });

  router.post('/v2beta/stable-image/upscale/fast', guard, form(['image']), async (req: Request, res: Response) => {
    const body = parseBody(V2UpscaleFastRequest, fields(req));
    const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
    const engine = engineFor('upscale-fast', 'upscale');
    const scale = (engine.kind === 'upscale' ? engine.scale : undefined) ?? 2;
    if (image.width * image.height * scale * scale > config.maxPixels * 4) {
      throw new ServiceError('invalid_pixel_count', `image: ${image.width}x${image.height} upscaled ${scale}x is over the upscale maximum of ${config.maxPixels * 4} pixels`, { field: 'image' });
    }
    await run(req, res, 'upscale-fast', engine, { kind: 'upscale', params: { outputFormat: body.output_format } }, { image }, body);
  });

  for (const service of ['upscale-conservative', 'upscale-creative'] as const) {
    const creative = service === 'upscale-creative';
    router.post(`/v2beta/stable-image/upscale/${creative ? 'creative' : 'conservative'}`, guard, form(['image']), async (req: Request, res: Response) => {
      const body = parseBody(creative ? V2CreativeRequest : V2ConservativeRequest, fields(req));
      const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
      const engine = generationFor(service, 'enhance');
      const [tileW, tileH] = [engine.nativeWidth, engine.nativeHeight];
      // Twice each side: large enough for one tile, within the upscale maximum.
      const [width, height] = [image.width * 2, image.height * 2];
      if (width < tileW || height < tileH) {
        throw new ServiceError('invalid_image_dimensions', `image: ${image.width}x${image.height} is too small; ${service} needs at least ${tileW / 2}x${tileH / 2} (half of ${engine.id}'s ${tileW}x${tileH} tile)`, { field: 'image' });
      }
      if (width * height > config.maxPixels * 4) {
        throw new ServiceError('invalid_pixel_count', `image: ${image.width}x${image.height} doubled is over the upscale maximum of ${config.maxPixels * 4} pixels`, { field: 'image' });
      }
      // the part of each tile kept: creative repaints `creativity` of it, conservative half that
      const params = paramsOf(req, engine, body, { width, height }, { imageStrength: 1 - (creative ? body.creativity : body.creativity / 2) });
      await run(req, res, service, engine, { kind: 'enhance', params }, { image }, body, creative);
    });
  }

  for (const service of ['inpaint', 'erase'] as const) {
    router.post(`/v2beta/stable-image/edit/${service}`, guard, form(['image', 'mask']), async (req: Request, res: Response) => {
      const body = parseBody(V2InpaintRequest, fields(req));
      if (service === 'inpaint' && !body.prompt) throw new ServiceError('bad_request', 'prompt: is required', { field: 'prompt' });
      const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
      const mask = await readImage(req, 'mask', config.maxPixels);
      const engine = generationFor(service, 'masking');
      // the mask image (white = repaint), else the image's transparent pixels; grown, then blurred
      const maskData = await repaintMask(image, mask, { marks: 'white', grow: body.grow_mask, noAlpha: () => ({ field: 'mask', message: 'mask: is required when image has no alpha channel (transparent pixels are what gets repainted)' }) });
      const size = ownOrNearest(engine, { width: image.width, height: image.height });
      // erase: filled from the surroundings, with no prompt
      const params = paramsOf(req, engine, service === 'erase' ? { ...body, prompt: '' } : body, size, { maskSource: 'MASK_IMAGE_WHITE' });
      await run(req, res, service, engine, { kind: 'masking', params }, { initImage: image, maskImage: { data: maskData, contentType: 'image/png' } }, body);
    });
  }

  router.post('/v2beta/stable-image/edit/outpaint', guard, form(['image']), async (req: Request, res: Response) => {
    const body = parseBody(V2OutpaintRequest, fields(req));
    const { left, right, up, down } = body;
    if (left + right + up + down === 0) throw new ServiceError('bad_request', 'left, right, up, down: at least one must be above 0', { field: 'left' });
    const image = requireFile(await readImage(req, 'image', config.maxPixels), 'image');
    const engine = generationFor('outpaint', 'masking');
    const canvas = { width: image.width + left + right, height: image.height + up + down };
    if (canvas.width * canvas.height > config.maxPixels) {
      throw new ServiceError('invalid_pixel_count', `left, right, up, down: the canvas ${canvas.width}x${canvas.height} is over the maximum of ${config.maxPixels} pixels`, { field: 'left' });
    }
    // The new area starts as the image's edges stretched outward (a colour prior); the mask marks it.
    const extension = { left, right, top: up, bottom: down };
    const stretched = await sharp(image.data).removeAlpha().extend({ ...extension, extendWith: 'copy' }).png().toBuffer();
    const mask = await sharp({ create: { width: image.width, height: image.height, channels: 3, background: '#000000' } })
      .extend({ ...extension, background: '#ffffff' })
      .png()
      .toBuffer();
    // creativity 1 paints the new area from noise; 0 denoises the stretched edges halfway
    const params = paramsOf(req, engine, body, ownOrNearest(engine, canvas), { maskSource: 'MASK_IMAGE_WHITE', imageStrength: 0.5 * (1 - body.creativity) });
    const inputs = { initImage: { data: stretched, contentType: 'image/png' }, maskImage: { data: mask, contentType: 'image/png' } };
    await run(req, res, 'outpaint', engine, { kind: 'masking', params }, inputs, body);
  });

  const result = async (req: Request, res: Response) => {
    const json = wantsJson(req);
    const record = await jobs.getOwn(req.accountId!, String(req.params.id));
    await answer(res, jobs, record, await jobs.snapshot(record), json);
  };
  router.get('/v2beta/results/:id', requireScope('generate'), result);
  // Stability's earlier path for the creative upscale's result, which its published SDK still calls
  router.get('/v2beta/stable-image/upscale/creative/result/:id', requireScope('generate'), result);

  for (const path of V2BETA_UNSUPPORTED) {
    router.post(path, (_req, _res, next) => next(new ServiceError('not_implemented', `${path} is not supported by sdq: it needs a model sdq does not have`)));
  }
  return router;
}
