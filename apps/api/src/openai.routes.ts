/**
 * OpenAI's Images API on the same queue, workers, credits and limits as Stability's routes: POST
 * /v1/images/generations and GET /v1/models, so the official `openai` SDK works with only baseURL and
 * apiKey set. A call is a job like any other (Idempotency-Key, limits, X-Webhook-URL or the account's
 * default webhook, the job API); it answers once the job ends, as OpenAI does, or 202 with the job object
 * when SYNC_WAIT runs out. Errors are `{error: {message, type, param, code}}` (errors.ts).
 */
import { type Request, type Response, Router } from 'express';
import { checkEngineSize, type EngineInfo } from '@sdq/pipeline/engines';
import { type GenerationParams, OPENAI_SIZES, OpenAIImageGenerationRequest, ServiceError, TERMINAL_STATUSES } from '@sdq/contracts';
import { requireScope } from './auth';
import { jsonBody } from './body';
import { ConfigError } from './config';
import { checkSize, type GenerationDeps, submitJob, validate } from './generation.routes';
import { jobCost } from './pricing';
import { rateLimit } from './rate-limit';
import { sizeForShape } from './v2beta.routes';

/** The model names the embedded engines answer to when OPENAI_MODELS does not name them. */
const EMBEDDED: Readonly<Record<string, string>> = { 'dall-e-2': 'tiny-sd', 'dall-e-3': 'tiny-sdxl', 'gpt-image-1': 'tiny-sd3' };
const DEFAULT_MODEL = 'dall-e-2';

/**
 * Model name -> generation engine: the embedded defaults that exist, then OPENAI_MODELS. A setting that
 * names no engine, or an upscaler, stops start-up.
 */
export function openaiModels(settings: [string, string][], engines: Map<string, EngineInfo>, aliases: Map<string, string>): Map<string, EngineInfo> {
  const out = new Map<string, EngineInfo>();
  for (const [model, id] of Object.entries(EMBEDDED)) if (engines.get(id)?.kind === 'generation') out.set(model, engines.get(id)!);
  for (const [model, id] of settings) {
    const engine = engines.get(aliases.get(id) ?? id);
    if (!engine) throw new ConfigError(`Invalid environment: OPENAI_MODELS names ${model}=${id}, but ${id} is not an engine under MODELS_DIR`);
    if (engine.kind !== 'generation') throw new ConfigError(`Invalid environment: OPENAI_MODELS names ${model}=${id}, but ${id} is an upscale engine`);
    out.set(model, engine);
  }
  return out;
}

/** hd / high: 50 steps, low: 15; the rest the engine's default. */
function stepsFor(engine: EngineInfo, quality: string | undefined): number {
  if (quality === 'hd' || quality === 'high') return 50;
  if (quality === 'low') return 15;
  return engine.defaults.steps ?? 30;
}

export function openaiRoutes(deps: GenerationDeps & { models: Map<string, EngineInfo> }): Router {
  const { config, engines, aliases, jobs, prices, models } = deps;
  const router = Router();

  const modelEngine = (model: string): EngineInfo => {
    const engine = models.get(model) ?? engines.get(aliases.get(model) ?? model);
    if (!engine || engine.kind !== 'generation') {
      throw new ServiceError('not_found', `model: ${model} is not an image model here (models: ${[...new Set([...models.keys(), ...[...engines.values()].filter((e) => e.kind === 'generation').map((e) => e.id)])].join(', ')})`);
    }
    if (!engine.modes.includes('text-to-image')) throw new ServiceError('bad_request', `model: ${model} cannot generate from text`);
    return engine;
  };

  /** OpenAI's sizes map onto the engine's size of that shape; any other WxH must be one the engine takes. */
  const sizeOf = (engine: EngineInfo, size: string | undefined): { width: number; height: number } => {
    if (size === undefined || size === 'auto') return { width: engine.nativeWidth ?? 512, height: engine.nativeHeight ?? 512 };
    const m = /^(\d{1,5})x(\d{1,5})$/.exec(size);
    const allowed = `allowed: auto, ${OPENAI_SIZES.join(', ')}${engine.sizes?.allowed ? `, or this model's own ${engine.sizes.allowed.join(', ')}` : ''}`;
    if (!m) throw new ServiceError('invalid_height_or_width', `size: ${JSON.stringify(size)} is not WxH (${allowed})`);
    const [width, height] = [Number(m[1]), Number(m[2])];
    if ((OPENAI_SIZES as readonly string[]).includes(size)) return sizeForShape(engine, width / height);
    if (width * height <= config.maxPixels && !checkEngineSize(engine, width, height)) return { width, height };
    throw new ServiceError('invalid_height_or_width', `size: ${size} is not a size this model takes (${allowed})`);
  };

  const wrap = (fn: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: (err?: unknown) => void) => {
    fn(req, res).catch(next);
  };

  router.post('/v1/images/generations', requireScope('generate'), rateLimit(deps.limiter), ...jsonBody('1mb'), wrap(async (req, res) => {
    const body = validate(OpenAIImageGenerationRequest, req.body);
    const engine = modelEngine(body.model ?? DEFAULT_MODEL);
    const { width, height } = sizeOf(engine, body.size);
    checkSize(width, height, config.maxPixels, engine);
    const params: GenerationParams = {
      prompts: [{ text: body.prompt, weight: 1 }],
      width,
      height,
      steps: stepsFor(engine, body.quality),
      cfgScale: engine.defaults.cfgScale ?? 7,
      samples: body.n,
      seed: body.seed ?? 0,
      sampler: engine.defaults.sampler,
      outputFormat: 'png',
    };
    const job = { kind: 'text-to-image' as const, params };
    const webhookUrl = req.get('x-webhook-url');
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs: {}, cost: jobCost(prices, engine, job), webhook: webhookUrl ? { url: webhookUrl } : undefined });
    if (repeated) res.set('Idempotent-Replayed', 'true');
    const snapshot = await jobs.waitForEnd(record, config.syncWait * 1000);
    const object = await jobs.describe(record, snapshot);
    if (!TERMINAL_STATUSES.has(object.status)) {
      // OpenAI has no asynchronous answer: the job object, for the job API, once SYNC_WAIT is over
      res.status(202).set('Location', object.urls.self).json(object);
      return;
    }
    if (object.status === 'canceled') throw new ServiceError('canceled', `the generation ${record.id} was canceled`);
    if (object.status === 'failed') {
      const { name, message } = object.error!;
      if (name === 'internal_error') throw new Error(`job ${record.id} failed: ${message}`);
      throw new ServiceError(name as ConstructorParameters<typeof ServiceError>[0], message);
    }
    const stored = snapshot!.result!.artifacts;
    const data = await Promise.all(
      object.artifacts.map(async (artifact, i) =>
        body.response_format === 'b64_json' ? { b64_json: (await jobs.readArtifact(stored[i].key)).toString('base64'), revised_prompt: body.prompt } : { url: artifact.url, revised_prompt: body.prompt },
      ),
    );
    res.set('X-Job-Id', record.id).json({ created: Math.floor(record.created_at / 1000), data });
  }));

  router.get('/v1/models', (_req, res) => {
    const names = [...new Set([...models.keys(), ...[...engines.values()].filter((e) => e.kind === 'generation').map((e) => e.id)])];
    res.json({ object: 'list', data: names.map((id) => ({ id, object: 'model', created: 0, owned_by: 'sdq' })) });
  });
  return router;
}
