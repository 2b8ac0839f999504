/**
 * Replicate's HTTP API under `/replicate/v1`, so the `replicate` client and the AI SDK's Replicate
 * provider work with only their base URL and token set: predictions (by model, or by version), their
 * reads, listing and cancel, `Prefer: wait` as Replicate answers it, and the models sdq's engines are.
 * A prediction is a job like any other (credits, Idempotency-Key, limits, webhooks, the job API);
 * errors are Replicate's `{title, detail, status}` (errors.ts).
 */
import { type Request, type Response, Router } from 'express';
import { checkLocalSignature, LOCAL_ARTIFACTS_PATH } from '@sdq/storage';
import { z } from 'zod';
import { checkEngineSize, type EngineInfo, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import {
  type GenerationParams,
  type JobObject,
  type LoraUse,
  REPLICATE_SCHEDULERS,
  ReplicateInput,
  ReplicateInputFields,
  type ReplicateJobMeta,
  ReplicateModelPredictionRequest,
  ReplicatePredictionRequest,
  replicatePrediction,
  replicateVersionOf,
  ServiceError,
  TERMINAL_STATUSES,
} from '@sdq/contracts';
import { requireScope } from '../../auth';
import { jsonBody } from '../../body';
import { ConfigError } from '../../config';
import { jsonImageBudget, Slots } from '../../in-flight';
import type { JobInputs, NewJob } from '../../jobs.service';
import { dryRun, jobCost } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import type { JobRecord } from '../../store';
import { type CheckedImage, checkImage } from '../../uploads';
import { parseBody } from '../../validate';
import { resolvePrompts, checkSize, checkWebhook, dataUriBytes, enginesByName, type GenerationDeps, isDryRun, parsePrefer, repaintMask, sizeForShape, submitJob } from '../../submission';

/** The names Replicate's own Stable Diffusion models have, for the first engine of each family. */
const FAMILY_MODELS: Readonly<Record<string, string>> = {
  'stability-ai/stable-diffusion': 'stable-diffusion',
  'stability-ai/sdxl': 'stable-diffusion-xl',
  'stability-ai/stable-diffusion-3': 'stable-diffusion-3',
};
/** The longest a `Prefer: wait` holds the request, as Replicate's sync mode. */
const MAX_WAIT_S = 60;
/** A sync answer carries its images as data URIs up to this many bytes in all (larger: URLs). */
const DATA_URI_BYTES = 8 * 2 ** 20;
/** An input data URI longer than this is kept in the prediction's `input` by its size only. */
const ECHO_CHARS = 512;

/**
 * owner/name -> generation engine: `sdq/<id>` for every one, Replicate's Stable Diffusion names for the
 * first engine of their family, then REPLICATE_MODELS. A setting naming no generation engine stops start-up.
 */
export function replicateModels(settings: [string, string][], engines: Map<string, EngineInfo>, aliases: Map<string, string>): Map<string, GenerationEngineInfo> {
  const out = enginesByName(engines, FAMILY_MODELS);
  for (const [model, id] of settings) {
    const engine = engines.get(aliases.get(id) ?? id);
    if (!engine || engine.kind !== 'generation') throw new ConfigError(`Invalid environment: REPLICATE_MODELS names ${model}=${id}, but ${id} is not a generation engine under MODELS_DIR`);
    out.set(model, engine);
  }
  return out;
}

/** Replicate's filter names as sdq's: output is the images, at completion; logs are progress. */
const EVENT_OF: Readonly<Record<string, string>> = { start: 'start', output: 'completed', logs: 'progress', completed: 'completed' };

/** The input as the prediction echoes it: long data URIs by their size only (they would fill every answer). */
function echoOf(input: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(input).map(([k, v]) => [k, typeof v === 'string' && v.length > ECHO_CHARS && v.startsWith('data:') ? `${v.slice(0, v.indexOf(',') + 1)}... (${v.length} characters)` : v]));
}

export function replicateRoutes(deps: GenerationDeps & { models: () => Map<string, GenerationEngineInfo>; webhookSecret(accountId: string): Promise<string> }): Router {
  const { config, jobs, prices, credits } = deps;
  const router = Router();
  const base = () => config.publicUrl.replace(/\/+$/, '');

  const modelEngine = (model: string): GenerationEngineInfo => {
    const models = deps.models();
    const engine = models.get(model);
    if (!engine) throw new ServiceError('not_found', `model ${model} not found (models: ${[...models.keys()].join(', ')})`);
    return engine;
  };
  const versionEngine = (version: string): { model: string; engine: GenerationEngineInfo } => {
    // owner/name:version, as the clients' identifiers write it, or the version id alone
    const id = version.includes(':') ? version.slice(version.lastIndexOf(':') + 1) : version;
    for (const [model, engine] of deps.models()) if (replicateVersionOf(engine.id) === id) return { model, engine };
    throw new ServiceError('not_found', `version ${id} not found: GET /replicate/v1/models/{owner}/{name} names each model's latest_version`, { field: 'version' });
  };

  const versionObject = (engine: GenerationEngineInfo) => ({
    id: replicateVersionOf(engine.id),
    created_at: new Date(0).toISOString(),
    cog_version: 'sdq',
    openapi_schema: {
      openapi: '3.0.2',
      info: { title: 'sdq', version: '1' },
      components: {
        schemas: {
          // a plain object schema, as Cog writes a model's Input
          Input: (({ $schema: _, ...schema }) => ({ title: 'Input', ...schema }))(z.toJSONSchema(ReplicateInputFields, { io: 'input', unrepresentable: 'any' })),
          Output: { type: 'array', items: { type: 'string', format: 'uri' } },
        },
      },
    },
  });
  const modelObject = (model: string, engine: GenerationEngineInfo) => {
    const [owner, name] = model.split('/');
    return {
      url: `${base()}/replicate/v1/models/${model}`,
      owner,
      name,
      description: `${engine.description} (sdq engine ${engine.id})`,
      visibility: 'public',
      github_url: null,
      paper_url: null,
      license_url: null,
      run_count: 0,
      cover_image_url: null,
      default_example: null,
      latest_version: versionObject(engine),
    };
  };

  /** A size the engine takes as it is, else the engine's size of that shape (as the OpenAI dialect does). */
  const sizeOf = (engine: GenerationEngineInfo, input: ReplicateInput, image?: CheckedImage): { width: number; height: number } => {
    let asked: { width: number; height: number } | undefined;
    if (input.width !== undefined || input.height !== undefined) asked = { width: input.width ?? engine.nativeWidth, height: input.height ?? engine.nativeHeight };
    else if (input.size) {
      const [w, h] = input.size.split('x').map(Number);
      asked = { width: w, height: h };
    } else if (input.aspect_ratio) {
      const [w, h] = input.aspect_ratio.split(':').map(Number);
      if (!w || !h) throw new ServiceError('invalid_height_or_width', `input.aspect_ratio: ${input.aspect_ratio} is not a shape`, { field: 'input.aspect_ratio' });
      return sizeForShape(engine, w / h);
    } else if (image) asked = { width: image.width, height: image.height };
    if (!asked) return { width: engine.nativeWidth, height: engine.nativeHeight };
    if (asked.width * asked.height <= config.maxPixels && !checkEngineSize(engine, asked.width, asked.height)) return asked;
    return sizeForShape(engine, asked.width / asked.height);
  };

  /**
   * An image input's bytes: a data URI, or the signed URL of an sdq artifact (a prediction's output, read
   * from storage once its signature holds, as fetching it would). sdq fetches no other URL: a request
   * must not make the API call where it says.
   */
  const fileOf = async (value: string, field: string): Promise<Buffer> => {
    const inline = dataUriBytes(value, field, config.maxUploadBytes);
    if (inline) return inline;
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
    const local = 'local' in config.storage ? config.storage.local : undefined;
    if (url && local && url.origin === new URL(base()).origin && url.pathname.startsWith(LOCAL_ARTIFACTS_PATH)) {
      const key = decodeURIComponent(url.pathname.slice(LOCAL_ARTIFACTS_PATH.length));
      const problem = checkLocalSignature(local.secret, key, url.searchParams.get('expires') ?? undefined, url.searchParams.get('signature') ?? undefined);
      if (problem) throw new ServiceError('bad_request', `${field}: this artifact URL is ${problem === 'expired' ? 'expired' : 'not validly signed'}`, { field });
      try {
        return await jobs.readArtifact(key);
      } catch {
        throw new ServiceError('bad_request', `${field}: artifact ${key} is not there (it may have expired)`, { field });
      }
    }
    throw new ServiceError('bad_request', `${field}: give the image as a data URI (data:image/png;base64,...) or the URL of an sdq artifact: sdq does not fetch other URLs a request names`, { field });
  };

  /** The job an input makes; every mistake in it is refused here, before anything is held. */
  const build = async (req: Request, engine: GenerationEngineInfo, raw: Record<string, unknown>): Promise<{ job: NewJob; inputs: JobInputs }> => {
    const input = parseBody(ReplicateInput, raw);
    const image = input.image === undefined ? undefined : await checkImage(await fileOf(input.image, 'input.image'), 'init_image', config.maxPixels, 'input.image');
    const mask = input.mask === undefined ? undefined : await checkImage(await fileOf(input.mask, 'input.mask'), 'mask_image', config.maxPixels, 'input.mask');
    if (mask && !image) throw new ServiceError('bad_request', 'input.mask: needs input.image, the image it repaints', { field: 'input.mask' });
    const mode = mask ? 'masking' : image ? 'image-to-image' : 'text-to-image';
    if (!engine.modes.includes(mode)) throw new ServiceError('bad_request', `model: its engine ${engine.id} cannot do ${mode} (it does ${engine.modes.join(', ')})`);
    const { width, height } = sizeOf(engine, input, image);
    checkSize(width, height, config.maxPixels, engine);
    const sampler = input.scheduler ? REPLICATE_SCHEDULERS[input.scheduler] : engine.defaults.sampler;
    if (sampler && engine.samplers && !engine.samplers.includes(sampler)) {
      const offered = Object.entries(REPLICATE_SCHEDULERS).filter(([, s]) => engine.samplers!.includes(s)).map(([n]) => n);
      throw new ServiceError('invalid_sampler', `input.scheduler: ${input.scheduler} cannot be used with ${engine.id} (schedulers: ${offered.join(', ')})`, { field: 'input.scheduler' });
    }
    const loras: LoraUse[] = [...(input.loras ?? []), ...(input.lora_weights ? [{ name: input.lora_weights, weight: input.lora_scale }] : [])];
    const params: GenerationParams = resolvePrompts(
      deps,
      req,
      engine,
      {
        prompts: [{ text: input.prompt, weight: 1 }, ...(input.negative_prompt?.trim() ? [{ text: input.negative_prompt, weight: -1 }] : [])],
        width,
        height,
        steps: input.num_inference_steps ?? engine.defaults.steps,
        cfgScale: input.guidance_scale ?? engine.defaults.cfgScale,
        samples: input.num_outputs,
        seed: input.seed ?? 0,
        sampler,
        outputFormat: input.output_format === 'jpg' ? 'jpeg' : input.output_format,
        ...(image ? { imageStrength: 1 - input.prompt_strength } : {}),
        ...(mask ? { maskSource: 'MASK_IMAGE_WHITE' as const } : {}),
      },
      loras,
      'input.loras',
    );
    const inputs: JobInputs = image ? { initImage: image } : {};
    // white is repainted, as Replicate's inpainting models read the mask; another size is resized
    if (image && mask) inputs.maskImage = { data: await repaintMask(image, mask, { marks: 'white', sameSize: false, noAlpha: () => ({ field: 'input.mask', message: 'input.mask: has no alpha channel' }) }), contentType: 'image/png' };
    return { job: { kind: mode, params }, inputs };
  };

  /** The job's prediction; `inline`: a sync answer, its images as data URIs while they are small. */
  const predictionOf = async (record: JobRecord, object: JobObject, inline = false) => {
    const meta = record.dialect ? (JSON.parse(record.dialect) as ReplicateJobMeta & { name: string }) : undefined;
    let outputs: string[] | undefined;
    if (inline && object.status === 'succeeded' && object.artifacts.reduce((n, a) => n + a.width * a.height * 4, 0) <= DATA_URI_BYTES) {
      const snapshot = await jobs.waitForEnd(record, 0);
      const stored = snapshot?.result?.artifacts ?? [];
      outputs = await Promise.all(stored.map(async (a) => `data:${a.content_type};base64,${(await jobs.readArtifact(a.key)).toString('base64')}`));
    }
    return replicatePrediction(object, meta?.name === 'replicate' ? meta : undefined, base(), outputs);
  };

  const create = async (req: Request, res: Response, model: string, engine: GenerationEngineInfo, body: z.infer<typeof ReplicateModelPredictionRequest>, version: string) => {
    const { job, inputs } = await build(req, engine, body.input);
    const cost = jobCost(prices, engine, job);
    const webhook = body.webhook === undefined ? undefined : { url: body.webhook, events: body.webhook_events_filter ? [...new Set(body.webhook_events_filter.map((e) => EVENT_OF[e]))] : undefined };
    if (isDryRun(req)) {
      await checkWebhook(config, webhook);
      res.json(dryRun(engine.id, job, cost, await credits.balance(req.accountId!)));
      return;
    }
    const dialect = { name: 'replicate', model, version, input: echoOf(body.input) };
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs, cost, webhook, dialect });
    if (repeated) res.set('Idempotent-Replayed', 'true');
    // Prefer: wait (60 s, Replicate's longest) or wait=N; without it, answered at once
    const prefer = /(^|,)\s*wait\s*(,|$)/i.test(req.get('prefer') ?? '') ? MAX_WAIT_S : parsePrefer(req.get('prefer')).wait;
    const waitMs = prefer === undefined ? 0 : Math.min(prefer, MAX_WAIT_S) * 1000;
    const snapshot = waitMs ? await jobs.waitForEnd(record, waitMs) : undefined;
    const object = await jobs.describe(record, snapshot);
    if (prefer !== undefined) res.set('Preference-Applied', `wait=${waitMs / 1000}`);
    res.status(201).set('Location', `${base()}/replicate/v1/predictions/${record.id}`).json(await predictionOf(record, object, waitMs > 0 && TERMINAL_STATUSES.has(object.status)));
  };

  // input images come as data URIs in the JSON: bounded per key and in all, as A1111's base64 bodies
  const imageBodyKb = Math.ceil((config.maxUploadBytes * 2 * 1.4) / 1024) + 64;
  const imageBodies = new Slots(
    { perKey: config.http.maxUploadsPerKey, perAccount: Number.MAX_SAFE_INTEGER, total: config.http.maxJsonImageBytesInFlight },
    { what: 'image bodies', perKey: 'MAX_UPLOADS_PER_KEY', perAccount: '', total: 'MAX_JSON_IMAGE_BYTES_IN_FLIGHT' },
  );
  const predict = [requireScope('generate'), rateLimit(deps.limiter), jsonImageBudget(imageBodies, imageBodyKb * 1024), ...jsonBody(`${imageBodyKb}kb`)];

  router.post('/replicate/v1/models/:owner/:name/predictions', predict, async (req: Request, res: Response) => {
    const model = `${String(req.params.owner)}/${String(req.params.name)}`;
    const engine = modelEngine(model);
    await create(req, res, model, engine, parseBody(ReplicateModelPredictionRequest, req.body), replicateVersionOf(engine.id));
  });
  router.post('/replicate/v1/predictions', predict, async (req: Request, res: Response) => {
    const body = parseBody(ReplicatePredictionRequest, req.body);
    const { model, engine } = versionEngine(body.version);
    await create(req, res, model, engine, body, replicateVersionOf(engine.id));
  });
  router.get('/replicate/v1/predictions', async (req: Request, res: Response) => {
    const cursor = typeof req.query.cursor === 'string' ? req.query.cursor.slice(0, 200) : undefined;
    const page = await jobs.list(req.accountId!, 20, cursor);
    const results = await Promise.all(page.data.map(async (object) => predictionOf(await jobs.getOwn(req.accountId!, object.id), object)));
    res.json({ next: page.next_cursor ? `${base()}/replicate/v1/predictions?cursor=${encodeURIComponent(page.next_cursor)}` : null, previous: null, results });
  });
  router.get('/replicate/v1/predictions/:id', async (req: Request, res: Response) => {
    const record = await jobs.getOwn(req.accountId!, String(req.params.id));
    res.json(await predictionOf(record, await jobs.describe(record)));
  });
  router.post('/replicate/v1/predictions/:id/cancel', requireScope('generate'), async (req: Request, res: Response) => {
    const record = await jobs.getOwn(req.accountId!, String(req.params.id));
    res.json(await predictionOf(record, await jobs.cancel(record)));
  });

  // sdq keeps no uploaded files: 501, on which the replicate client sends a Buffer or Blob input as a
  // data URI instead (its default file strategy falls back so on a server error, not on a 4xx)
  router.post('/replicate/v1/files', requireScope('generate'), () => {
    throw new ServiceError('not_implemented', '/replicate/v1/files: sdq keeps no uploaded files; give images in input as data URIs (the replicate client does so when this fails)');
  });

  // the account's signing secret, as replicate.webhooks.default.secret.get() reads it (what validateWebhook takes)
  router.get('/replicate/v1/webhooks/default/secret', requireScope('generate'), async (req: Request, res: Response) => {
    res.set('Cache-Control', 'no-store').json({ key: await deps.webhookSecret(req.accountId!) });
  });

  router.get('/replicate/v1/models', (_req, res) => {
    res.json({ next: null, previous: null, results: [...deps.models()].map(([model, engine]) => modelObject(model, engine)) });
  });
  router.get('/replicate/v1/models/:owner/:name', (req, res) => {
    const model = `${String(req.params.owner)}/${String(req.params.name)}`;
    res.json(modelObject(model, modelEngine(model)));
  });
  router.get('/replicate/v1/models/:owner/:name/versions', (req, res) => {
    const engine = modelEngine(`${String(req.params.owner)}/${String(req.params.name)}`);
    res.json({ next: null, previous: null, results: [versionObject(engine)] });
  });
  router.get('/replicate/v1/models/:owner/:name/versions/:version', (req, res) => {
    const engine = modelEngine(`${String(req.params.owner)}/${String(req.params.name)}`);
    if (String(req.params.version) !== replicateVersionOf(engine.id)) throw new ServiceError('not_found', `version ${String(req.params.version)} of ${String(req.params.owner)}/${String(req.params.name)} not found`);
    res.json(versionObject(engine));
  });
  return router;
}
