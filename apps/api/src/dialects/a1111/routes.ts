/**
 * AUTOMATIC1111's web UI API (`/sdapi/v1`) on the same queue, workers, credits and limits as the other
 * dialects. Where A1111 runs one job at a time behind a global lock, with no keys and one shared state,
 * here every caller has its own: its key (Bearer, or HTTP Basic with the key as the password, as
 * `--api-auth` clients send it), its options (its default engine), its progress and its interrupt.
 * Errors are A1111's `{error, detail, body, errors}` (errors.ts).
 */
import { freemem, totalmem } from 'node:os';
import { basename } from 'node:path';
import { type Request, type Response, Router } from 'express';
import type { z } from 'zod';
import { checkEngineSize, defaultEngineOf, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import { LATENT_UPSCALE_MODES } from '@sdq/pipeline/hires';
import { readPngText } from '@sdq/pipeline/image';
import { type A1111Generation, A1111_SAMPLERS, A1111_SCHEDULERS, a1111SamplerAliases, resolveA1111Sampler, A1111ExtraSingleImageRequest, checkpointId, A1111Img2ImgRequest, A1111OptionsUpdate, A1111PngInfoRequest, A1111Txt2ImgRequest, parseInfotext, type GenerationParams, ServiceError, TERMINAL_STATUSES } from '@sdq/contracts';
import { requireScope } from '../../auth';
import { jsonImageBudget, Slots } from '../../in-flight';
import { jsonBody } from '../../body';
import { resolvePrompts, checkSize, dataUriBytes, type GenerationDeps, hiresParams, repaintMask, sizeForShape, submitAndWait } from '../../submission';
import { jobCost } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import { parseBody } from '../../validate';
import type { Store } from '../../store';
import type { JobInputs, NewJob } from '../../jobs.service';
import { type CheckedImage, checkImage } from '../../uploads';

type Deps = GenerationDeps & { store: Pick<Store, 'keyDefaultEngine' | 'setKeyDefaultEngine'> };

/**
 * Base64 as A1111 clients send it, with or without a `data:image/...;base64,` prefix; an image over
 * MAX_UPLOAD_BYTES is refused before it is decoded (invalid_file_size, as a multipart upload is).
 */
function decodeBase64(text: string, field: string, maxBytes: number): Buffer {
  const inline = dataUriBytes(text, field, maxBytes);
  if (inline) return inline;
  const bytes = Math.floor((text.length * 3) / 4);
  if (bytes > maxBytes) throw new ServiceError('invalid_file_size', `${field}: about ${bytes} bytes once decoded, over the maximum of ${maxBytes} (MAX_UPLOAD_BYTES)`, { field: field });
  return Buffer.from(text, 'base64');
}

/**
 * The sdq sampler of an A1111 sampler name and scheduler, resolved as A1111 resolves them (names,
 * aliases, a scheduler at the end of the name, the scheduler by name or label); with what ran, in
 * A1111's names, for the answer's info.
 */
function samplerOf(engine: GenerationEngineInfo, name: string | undefined, scheduler: string | undefined): { sampler: string | undefined; samplerName?: string; scheduler: string; note?: string } {
  const asked = resolveA1111Sampler(name, scheduler);
  const offered = Object.entries(A1111_SAMPLERS).filter(([, s]) => engine.samplers?.includes(s)).map(([n]) => n);
  if (asked.unknown !== undefined) throw new ServiceError('invalid_sampler', `sampler_name: ${JSON.stringify(asked.unknown)} is not a sampler of ${engine.id} (samplers: ${offered.join(', ')})`, { field: 'sampler_name' });
  const karras = asked.scheduler === 'Karras';
  if (asked.sampler === undefined) {
    const sampler = karras && engine.samplers?.includes('K_DPMPP_2M_KARRAS') ? 'K_DPMPP_2M_KARRAS' : engine.defaults.sampler;
    return { sampler, scheduler: asked.scheduler, ...(asked.note ? { note: asked.note } : {}) };
  }
  let sdq = A1111_SAMPLERS[asked.sampler];
  let note = asked.note;
  let ran = asked.scheduler;
  if (karras && sdq === 'K_DPMPP_2M') sdq = 'K_DPMPP_2M_KARRAS';
  else if (karras && sdq !== 'K_DPMPP_2M_KARRAS') {
    note = `scheduler Karras is not one sdq runs with ${asked.sampler}: its own schedule (Automatic) ran`;
    ran = 'Automatic';
  }
  if (!engine.samplers?.includes(sdq)) throw new ServiceError('invalid_sampler', `sampler_name: ${JSON.stringify(name)} is not a sampler of ${engine.id} (samplers: ${offered.join(', ')})`, { field: 'sampler_name' });
  return { sampler: sdq, samplerName: asked.sampler, scheduler: ran, ...(note ? { note } : {}) };
}

export function a1111Routes(deps: Deps): Router {
  const { config, engines, aliases, jobs, prices, store } = deps;
  const router = Router();
  const generationEngines = () => [...engines.values()].filter((e): e is GenerationEngineInfo => e.kind === 'generation');

  /** The engine of a checkpoint name (an engine id or alias; A1111 titles carry a ` [hash]` suffix, dropped). */
  const engineNamed = (name: string, field: string): GenerationEngineInfo => {
    const id = checkpointId(name);
    const engine = engines.get(aliases.get(id) ?? id);
    if (!engine || engine.kind !== 'generation') throw new ServiceError('not_found', `${field}: ${name} is not a model here (models: ${generationEngines().map((e) => e.id).join(', ')})`, { field: field });
    return engine;
  };
  /** The caller's default engine: its own options, else the deployment's (DEFAULT_ENGINE, else the first generation engine). */
  const defaultEngine = async (req: Request): Promise<GenerationEngineInfo> => {
    const own = await store.keyDefaultEngine(req.keyId!);
    const chosen = own ? engines.get(own) : undefined;
    if (chosen?.kind === 'generation') return chosen;
    const fallback = generationEngines().find((e) => e.id === defaultEngineOf(generationEngines(), config.defaultEngine));
    return fallback ?? engineNamed('none', 'sd_model_checkpoint');
  };

  const generate = [requireScope('generate'), rateLimit(deps.limiter), ...jsonBody('1mb')];
  // base64 images in the JSON: MAX_UPLOAD_BYTES each, a third larger as base64, init image and mask
  const imageBodyKb = Math.ceil((config.maxUploadBytes * 2 * 1.4) / 1024) + 64;
  const imageBodyLimit = `${imageBodyKb}kb`;
  // such a body is held in memory several times over while parsed and decoded: bounded per key and in all
  const imageBodies = new Slots(
    { perKey: config.http.maxUploadsPerKey, perAccount: Number.MAX_SAFE_INTEGER, total: config.http.maxJsonImageBytesInFlight },
    { what: 'image bodies', perKey: 'MAX_UPLOADS_PER_KEY', perAccount: '', total: 'MAX_JSON_IMAGE_BYTES_IN_FLIGHT' },
  );
  const imageJson = [jsonImageBudget(imageBodies, imageBodyKb * 1024), ...jsonBody(imageBodyLimit)];

  /**
   * What both generation routes take from a body: the engine (override_settings.sd_model_checkpoint, else
   * the key's default), the size (given; else the engine's native size, or for img2img the image's own
   * size where the engine takes it, else the engine's size of its shape), the images, sampler and prompts.
   */
  const settings = async (req: Request, body: A1111Generation, mode: 'text-to-image' | 'image-to-image' | 'masking', image?: CheckedImage) => {
    const checkpoint = body.override_settings?.sd_model_checkpoint;
    if (checkpoint !== undefined && typeof checkpoint !== 'string') throw new ServiceError('bad_request', 'override_settings.sd_model_checkpoint: must be a string', { field: 'override_settings.sd_model_checkpoint' });
    const engine = checkpoint ? engineNamed(checkpoint, 'override_settings.sd_model_checkpoint') : await defaultEngine(req);
    if (!engine.modes.includes(mode)) throw new ServiceError('bad_request', `override_settings.sd_model_checkpoint: ${engine.id} cannot do ${mode} (it does ${engine.modes.join(', ')})`, { field: 'override_settings.sd_model_checkpoint' });
    let size = { width: body.width ?? engine.nativeWidth, height: body.height ?? engine.nativeHeight };
    if (image && body.width === undefined && body.height === undefined) {
      const own = { width: image.width, height: image.height };
      size = own.width * own.height <= config.maxPixels && !checkEngineSize(engine, own.width, own.height) ? own : sizeForShape(engine, own.width / own.height);
    }
    checkSize(size.width, size.height, config.maxPixels, engine);
    const samples = body.batch_size * body.n_iter;
    if (samples > 10) throw new ServiceError('invalid_samples', `batch_size x n_iter: ${samples} images is over the maximum of 10`, { field: 'batch_size' });
    // sampler_index is the old name of sampler_name; an empty one is none, as A1111 reads it
    const sampler = samplerOf(engine, body.sampler_name || body.sampler_index || undefined, body.scheduler);
    const prompts = [{ text: body.prompt, weight: 1 }, ...(body.negative_prompt.trim() ? [{ text: body.negative_prompt, weight: -1 }] : [])];
    return { engine, ...size, samples, sampler, prompts };
  };

  /** Queues the job, waits for it (A1111 answers synchronously) and answers {images, parameters, info}. */
  const answer = async (req: Request, res: Response, engine: GenerationEngineInfo, job: NewJob, inputs: JobInputs, body: A1111Generation, chosen: ReturnType<typeof samplerOf>, width: number, height: number, parameters: object = body) => {
    const done = await submitAndWait(deps, req, res, engine, { job, inputs, cost: jobCost(prices, engine, job) });
    if (!done) return;
    const { record, artifacts } = done;
    const pngs = await Promise.all(artifacts.map((a) => jobs.readArtifact(a.key)));
    const seeds = artifacts.map((a) => a.seed);
    // no sampler asked: the engine's own, as its infotext names it (never "")
    const ran = chosen.sampler ?? engine.schedulerSampler;
    const samplerName = chosen.samplerName ?? Object.entries(A1111_SAMPLERS).find(([, s]) => s === ran)?.[0] ?? ran ?? '';
    const info = {
      prompt: body.prompt,
      all_prompts: seeds.map(() => body.prompt),
      negative_prompt: body.negative_prompt,
      all_negative_prompts: seeds.map(() => body.negative_prompt),
      seed: seeds[0],
      all_seeds: seeds,
      subseed: body.subseed,
      all_subseeds: seeds.map(() => body.subseed),
      subseed_strength: body.subseed_strength,
      width,
      height,
      sampler_name: samplerName,
      // what ran, in A1111's label; a scheduler sdq cannot run fell back to Automatic, as A1111 falls back for an unknown one
      scheduler: chosen.scheduler,
      extra_generation_params: { 'Schedule type': chosen.scheduler, ...(chosen.note ? { 'sdq note': chosen.note } : {}) },
      cfg_scale: body.cfg_scale,
      steps: body.steps,
      batch_size: body.batch_size,
      sd_model_name: engine.id,
      sd_model_hash: null,
      infotexts: pngs.map((png) => readPngText(png).parameters ?? ''),
      // sdq's addition, as A1111's NSFW-censor extensions report it: the safety checker's flag per image
      nsfw: artifacts.map((a) => a.finish_reason === 'CONTENT_FILTERED'),
      job_timestamp: new Date(record.created_at).toISOString().replace(/\D/g, '').slice(0, 14),
      job_id: record.id,
      version: 'sdq',
    };
    res.json({ images: body.send_images ? pngs.map((p) => p.toString('base64')) : [], parameters, info: JSON.stringify(info) });
  };

  /**
   * Hires fix's second pass as A1111 reads it: the target (hr_resize_x / _y, the other side by the
   * first pass's shape, else hr_scale), the upscaler (default Latent), its steps, sampler and prompts.
   * A target the engine cannot draw is refused here, before any charge.
   */
  const hiresOf = (req: Request, engine: GenerationEngineInfo, body: z.infer<typeof A1111Txt2ImgRequest>, width: number, height: number, first: ReturnType<typeof samplerOf>): GenerationParams['hires'] => {
    if (!body.enable_hr) return undefined;
    const x = body.hr_resize_x || (body.hr_resize_y ? Math.round((body.hr_resize_y * width) / height) : Math.round(width * body.hr_scale));
    const y = body.hr_resize_y || (body.hr_resize_x ? Math.round((body.hr_resize_x * height) / width) : Math.round(height * body.hr_scale));
    const upscaler = body.hr_upscaler || 'Latent';
    const same = !body.hr_sampler_name || body.hr_sampler_name === 'Use same sampler';
    const second = same && !body.hr_scheduler ? first : samplerOf(engine, same ? body.sampler_name || body.sampler_index || undefined : body.hr_sampler_name!, body.hr_scheduler || body.scheduler);
    const hrPrompts = body.hr_prompt || body.hr_negative_prompt ? [{ text: body.hr_prompt || body.prompt, weight: 1 }, ...((body.hr_negative_prompt || body.negative_prompt).trim() ? [{ text: body.hr_negative_prompt || body.negative_prompt, weight: -1 }] : [])] : undefined;
    const label: Record<string, string | number> = body.hr_resize_x || body.hr_resize_y ? { 'Hires resize': `${x}x${y}` } : { 'Hires upscale': body.hr_scale };
    return hiresParams(engines, engine, config.maxPixels, {
      width: x,
      height: y,
      upscaler,
      ...(body.hr_second_pass_steps ? { steps: body.hr_second_pass_steps } : {}),
      denoisingStrength: body.denoising_strength ?? 0.7,
      ...(second.sampler !== undefined ? { sampler: second.sampler } : {}),
      ...(hrPrompts ? { prompts: resolvePrompts(deps, req, engine, { prompts: hrPrompts, width: x, height: y, steps: 1, cfgScale: 1, samples: 1, seed: 0, outputFormat: 'png' }, undefined, 'hr_prompt').prompts } : {}),
      label,
    }, 'hr_upscaler');
  };

  router.post('/sdapi/v1/txt2img', ...generate, async (req, res) => {
    const body = parseBody(A1111Txt2ImgRequest, req.body);
    const { engine, width, height, samples, sampler, prompts } = await settings(req, body, 'text-to-image');
    const hires = hiresOf(req, engine, body, width, height, sampler);
    const params = resolvePrompts(deps, req, engine, { prompts, width, height, steps: body.steps, cfgScale: body.cfg_scale, samples, seed: body.seed === -1 ? 0 : body.seed, sampler: sampler.sampler, outputFormat: 'png', ...(hires ? { hires } : {}) }, undefined, 'prompt');
    await answer(req, res, engine, { kind: 'text-to-image', params }, {}, body, sampler, width, height);
  });

  router.post('/sdapi/v1/img2img', requireScope('generate'), rateLimit(deps.limiter), ...imageJson, async (req, res) => {
    const body = parseBody(A1111Img2ImgRequest, req.body);
    const image = await checkImage(decodeBase64(body.init_images[0], 'init_images[0]', config.maxUploadBytes), 'init_image', config.maxPixels, 'init_images[0]');
    const mask = body.mask === undefined ? undefined : await checkImage(decodeBase64(body.mask, 'mask', config.maxUploadBytes), 'mask_image', config.maxPixels, 'mask');
    const { engine, width, height, samples, sampler, prompts } = await settings(req, body, mask ? 'masking' : 'image-to-image', image);
    const params = resolvePrompts(deps, req, engine, { prompts, width, height, steps: body.steps, cfgScale: body.cfg_scale, samples, seed: body.seed === -1 ? 0 : body.seed, sampler: sampler.sampler, outputFormat: 'png', imageStrength: 1 - body.denoising_strength }, undefined, 'prompt');
    const inputs: JobInputs = { initImage: image };
    // A1111's mask: white = repaint (black with invert), its edge blurred by mask_blur; another size is resized
    if (mask) inputs.maskImage = { data: await repaintMask(image, mask, { marks: 'white', invert: body.inpainting_mask_invert === 1, blur: body.mask_blur, sameSize: false, noAlpha: () => ({ field: 'mask', message: 'mask: has no alpha channel' }) }), contentType: 'image/png' };
    // as A1111: the answer's parameters leave the images out
    await answer(req, res, engine, mask ? { kind: 'masking', params: { ...params, maskSource: 'MASK_IMAGE_WHITE' } } : { kind: 'image-to-image', params }, inputs, body, sampler, width, height, { ...body, init_images: null, mask: null });
  });

  router.post('/sdapi/v1/extra-single-image', requireScope('generate'), rateLimit(deps.limiter), ...imageJson, async (req, res) => {
    const body = parseBody(A1111ExtraSingleImageRequest, req.body);
    const upscalers = [...engines.values()].filter((e) => e.kind === 'upscale');
    const engine = body.upscaler_1 === 'None' ? upscalers[0] : upscalers.find((e) => e.id === (aliases.get(body.upscaler_1) ?? body.upscaler_1));
    if (!engine) throw new ServiceError('not_found', `upscaler_1: ${body.upscaler_1} is not an upscaler here (upscalers: ${upscalers.map((e) => e.id).join(', ') || 'none'})`, { field: 'upscaler_1' });
    const image = await checkImage(decodeBase64(body.image, 'image', config.maxUploadBytes), 'image', config.maxPixels, 'image');
    const scale = engine.scale ?? 2;
    const width = body.resize_mode === 1 ? body.upscaling_resize_w : Math.round(image.width * body.upscaling_resize);
    const height = body.resize_mode === 1 ? body.upscaling_resize_h : Math.round(image.height * body.upscaling_resize);
    // the upscaler enlarges by its own factor at most: a larger target is refused here, not failed in a worker
    if (width > image.width * scale || height > image.height * scale) {
      const field = body.resize_mode === 1 ? 'upscaling_resize_w' : 'upscaling_resize';
      throw new ServiceError('invalid_height_or_width', `${field}: ${width}x${height} is beyond ${engine.id}'s ${scale}x of ${image.width}x${image.height} (at most ${image.width * scale}x${image.height * scale})`, { field: field });
    }
    if (width * height > config.maxPixels * 4) throw new ServiceError('invalid_pixel_count', `${width}x${height} is over the upscale maximum of ${config.maxPixels * 4} pixels`);
    // the upscaler keeps the image's shape (A1111's upscaling_crop would crop to another): the width says it all
    if (Math.abs(width / height - image.width / image.height) > 0.01) {
      throw new ServiceError('invalid_height_or_width', `upscaling_resize_w x upscaling_resize_h: ${width}x${height} is not the image's shape (${image.width}x${image.height}); sdq does not crop`, { field: 'upscaling_resize_w' });
    }
    const job: NewJob = { kind: 'upscale', params: { width, outputFormat: 'png' } };
    const done = await submitAndWait(deps, req, res, engine, { job, inputs: { image }, cost: jobCost(prices, engine, job) });
    if (!done) return;
    const png = await jobs.readArtifact(done.artifacts[0].key);
    res.json({ html_info: '', image: png.toString('base64') });
  });

  // rate-limited as generations are: decoding an image is work a key must not be able to ask for without end
  router.post('/sdapi/v1/png-info', requireScope('read'), rateLimit(deps.limiter), ...imageJson, async (req, res) => {
    const body = parseBody(A1111PngInfoRequest, req.body);
    const image = await checkImage(decodeBase64(body.image, 'image', config.maxUploadBytes), 'image', config.maxPixels * 4);
    // text chunks are PNG's; the other formats answer empty, as A1111 does without metadata
    const items = image.contentType === 'image/png' ? readPngText(image.data) : {};
    const info = items.parameters ?? '';
    res.json({ info, items, parameters: info ? parseInfotext(info) : {} });
  });

  router.get('/sdapi/v1/sd-models', (_req, res) => {
    res.json(generationEngines().map((e) => ({ title: e.id, model_name: e.id, hash: null, sha256: null, filename: e.id, config: null })));
  });
  router.get('/sdapi/v1/samplers', (_req, res) => {
    // the samplers any engine here offers, with the engines that do
    res.json(
      Object.entries(A1111_SAMPLERS)
        .filter(([, s]) => generationEngines().some((e) => e.samplers?.includes(s)))
        .map(([name, s]) => ({ name, aliases: [...a1111SamplerAliases(name), s], options: { engines: generationEngines().filter((e) => e.samplers?.includes(s)).map((e) => e.id).join(',') } })),
    );
  });
  router.get('/sdapi/v1/schedulers', (_req, res) => {
    res.json(A1111_SCHEDULERS.map((name) => ({ name: name.toLowerCase().replace(/ /g, '_'), label: name, aliases: null, default_rho: -1, need_inner_model: false })));
  });
  router.get('/sdapi/v1/upscalers', (_req, res) => {
    res.json([...engines.values()].filter((e) => e.kind === 'upscale').map((e) => ({ name: e.id, model_name: e.id, model_path: null, model_url: null, scale: e.scale ?? 2 })));
  });
  // The lists A1111 front ends read at connect time, with A1111's fields, saying what sdq really has: no
  // separate VAEs, hypernetworks, face restorers, styles, modules, scripts or extensions, so empty lists.
  // Nothing here reveals paths, flags or accounts.
  router.get('/sdapi/v1/latent-upscale-modes', (_req, res) => {
    res.json(LATENT_UPSCALE_MODES.map((name) => ({ name })));
  });
  for (const name of ['sd-vae', 'hypernetworks', 'face-restorers', 'prompt-styles', 'sd-modules', 'script-info', 'extensions']) {
    router.get(`/sdapi/v1/${name}`, (_req, res) => {
      res.json([]);
    });
  }
  router.get('/sdapi/v1/realesrgan-models', (_req, res) => {
    // the upscale engines take Real-ESRGAN's ONNX convention
    res.json([...engines.values()].filter((e) => e.kind === 'upscale').map((e) => ({ name: e.id, path: null, scale: e.scale ?? 2 })));
  });
  router.get('/sdapi/v1/scripts', (_req, res) => {
    res.json({ txt2img: [], img2img: [] });
  });
  router.get('/sdapi/v1/cmd-flags', (_req, res) => {
    // the flags a client branches on, as A1111 answers them when it runs with --api; none of the server's own
    res.json({ api: true, nowebui: true, listen: true, lowvram: false, medvram: false, hide_ui_dir_config: true, disable_safe_unpickle: false });
  });
  router.get('/sdapi/v1/memory', (_req, res) => {
    // models run on the workers, not in this process: what A1111 says of a missing CUDA
    res.json({ ram: { free: freemem(), used: totalmem() - freemem(), total: totalmem() }, cuda: { error: 'sdq runs its models on its workers (GET /v1/admin/workers), not in the API process' } });
  });
  // engines and adapters are read again on their own (ENGINE_REFRESH_MS, a second for LoRAs): a refresh is done already
  for (const action of ['refresh-checkpoints', 'refresh-vae']) {
    router.post(`/sdapi/v1/${action}`, requireScope('generate'), (_req, res) => {
      res.json(null);
    });
  }
  // which engines a worker holds is the operator's (WORKER_PRELOAD, its memory bound), never a caller's
  for (const action of ['unload-checkpoint', 'reload-checkpoint']) {
    router.post(`/sdapi/v1/${action}`, requireScope('generate'), () => {
      throw new ServiceError('permission_denied', `${action}: the workers load and unload engines themselves (WORKER_PRELOAD, WORKER_MODEL_MEMORY_MB); an operator controls them, not an API key`);
    });
  }
  router.post('/sdapi/v1/interrogate', requireScope('generate'), () => {
    throw new ServiceError('not_implemented', 'interrogate: sdq has no captioning model (CLIP interrogator, DeepBooru)');
  });
  router.get('/internal/ping', (_req, res) => {
    res.json({});
  });

  // the LoRA and embedding folders as A1111's extra networks answer them
  router.get('/sdapi/v1/loras', (_req, res) => {
    res.json([...deps.adapters.loras().values()].map((f) => ({ name: f.name, alias: f.metadata.ss_output_name ?? f.name, path: basename(f.path), metadata: { ...f.metadata } })));
  });
  for (const path of ['/sdapi/v1/refresh-loras', '/sdapi/v1/refresh-embeddings']) {
    router.post(path, requireScope('generate'), (_req, res) => {
      deps.adapters.refresh();
      res.json(null);
    });
  }
  // loaded: the embeddings the caller's checkpoint takes; skipped: the others (another family's width)
  router.get('/sdapi/v1/embeddings', async (req, res) => {
    const engine = await defaultEngine(req);
    const entries = [...deps.adapters.embeddings().values()].map((f) => {
      const fits = deps.adapters.embeddingFits(engine, f);
      return [fits, f.name, { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: f.embedding.vectors.dim, vectors: f.embedding.vectors.count }] as const;
    });
    res.json({ loaded: Object.fromEntries(entries.filter(([fits]) => fits).map(([, n, e]) => [n, e])), skipped: Object.fromEntries(entries.filter(([fits]) => !fits).map(([, n, e]) => [n, e])) });
  });

  router.get('/sdapi/v1/options', async (req, res) => {
    res.json({ sd_model_checkpoint: (await defaultEngine(req)).id, samples_format: 'png' });
  });
  router.post('/sdapi/v1/options', requireScope('generate'), ...jsonBody('64kb'), async (req, res) => {
    const body = parseBody(A1111OptionsUpdate, req.body);
    // this key's default only: never another caller's
    if (body.sd_model_checkpoint !== undefined) await store.setKeyDefaultEngine(req.keyId!, engineNamed(body.sd_model_checkpoint, 'sd_model_checkpoint').id);
    res.json(null);
  });

  /** The calling key's most recent job that has not ended: another key of the account has its own. */
  const currentJob = (req: Request) => jobs.currentOfKey(req.accountId!, req.keyId!);
  router.get('/sdapi/v1/progress', async (req, res) => {
    const job = await currentJob(req);
    const step = job?.progress?.step ?? 0;
    const steps = job?.progress?.steps ?? 0;
    const progress = steps ? step / steps : 0;
    const elapsed = job?.started_at ? (Date.now() - Date.parse(job.started_at)) / 1000 : 0;
    res.json({
      progress,
      eta_relative: progress > 0 ? (elapsed / progress) * (1 - progress) : 0,
      state: { skipped: false, interrupted: false, job: job?.id ?? '', job_count: job ? 1 : 0, job_timestamp: job ? job.created_at.replace(/\D/g, '').slice(0, 14) : '0', job_no: 0, sampling_step: step, sampling_steps: steps },
      current_image: null,
      textinfo: job ? (job.status === 'queued' ? `queued (position ${job.queue_position ?? 0})` : `step ${step} of ${steps}`) : null,
    });
  });
  for (const action of ['interrupt', 'skip'] as const) {
    router.post(`/sdapi/v1/${action}`, requireScope('generate'), async (req, res) => {
      // the caller's own job, never another's; one job per request here, so skip is interrupt
      const job = await currentJob(req);
      if (job) await jobs.cancel(await jobs.getOwn(req.accountId!, job.id)).catch(() => {});
      res.json(null);
    });
  }
  return router;
}
