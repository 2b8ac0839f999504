/**
 * fal's API under `/fal`, so `@fal-ai/client` (through its own proxyUrl option) and the AI SDK's fal
 * provider (`baseURL: <sdq>/fal`) work unchanged: the synchronous run (`POST /fal/{app}`), the queue
 * (`/fal/queue/{app}`: submit, status, its stream, result, cancel), and `/fal/proxy`, which takes the
 * fal URL a client names in `x-fal-target-url` and serves it here (only fal's run and queue URLs).
 * Keys come as fal sends them, `Authorization: Key <key>`. A request is a job like any other; errors are
 * `{detail, message, code}` (errors.ts).
 */
import { type Request, type Response, Router } from 'express';
import { checkEngineSize, type EngineInfo, type GenerationEngineInfo } from '@sdq/pipeline/engines';
import { FAL_IMAGE_SIZES, FalInput, type FalJobMeta, falOutput, type GenerationParams, type JobObject, ServiceError, TERMINAL_STATUSES } from '@sdq/contracts';
import { requireScope } from '../../auth';
import { jsonBody } from '../../body';
import type { NewJob } from '../../jobs.service';
import { dryRun, jobCost } from '../../pricing';
import { rateLimit } from '../../rate-limit';
import type { JobRecord } from '../../store';
import { parseBody } from '../../validate';
import { resolvePrompts, checkSize, checkWebhook, endedAsError, enginesByName, type GenerationDeps, isDryRun, sizeForShape, submitJob } from '../../submission';

/** fal's app names for the first engine of each family; every engine is also `sdq/<id>`. */
const FAMILY_APPS: Readonly<Record<string, string>> = {
  'fal-ai/fast-sdxl': 'stable-diffusion-xl',
  'fal-ai/stable-diffusion-v3-medium': 'stable-diffusion-3',
  'fal-ai/stable-diffusion-v15': 'stable-diffusion',
};

/** The engines by fal app id, as the engines are now. */
export function falApps(engines: Map<string, EngineInfo>): Map<string, GenerationEngineInfo> {
  return enginesByName(engines, FAMILY_APPS);
}

const REQUEST_ID = 'x-fal-request-id';
const STATUS: Record<JobObject['status'], 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED'> = { queued: 'IN_QUEUE', running: 'IN_PROGRESS', succeeded: 'COMPLETED', failed: 'COMPLETED', canceled: 'COMPLETED' };

export function falRoutes(deps: GenerationDeps): Router {
  const { config, engines, jobs, prices, credits } = deps;
  const router = Router();
  const base = () => config.publicUrl.replace(/\/+$/, '');

  const appEngine = (app: string): GenerationEngineInfo => {
    const apps = falApps(engines);
    const engine = apps.get(app);
    if (!engine) throw new ServiceError('not_found', `app ${app} not found (apps: ${[...apps.keys()].join(', ')})`);
    return engine;
  };

  const build = (req: Request, engine: GenerationEngineInfo, raw: unknown): { job: NewJob; safetyChecker: boolean } => {
    const input = parseBody(FalInput, raw);
    if (!engine.modes.includes('text-to-image')) throw new ServiceError('bad_request', `app: its engine ${engine.id} cannot do text-to-image`);
    let size = { width: engine.nativeWidth, height: engine.nativeHeight };
    if (input.image_size !== undefined) {
      const asked = typeof input.image_size === 'string' ? FAL_IMAGE_SIZES[input.image_size] : input.image_size;
      size = asked.width * asked.height <= config.maxPixels && !checkEngineSize(engine, asked.width, asked.height) ? asked : sizeForShape(engine, asked.width / asked.height);
    }
    checkSize(size.width, size.height, config.maxPixels, engine);
    const params: GenerationParams = resolvePrompts(
      deps,
      req,
      engine,
      {
        prompts: [{ text: input.prompt, weight: 1 }, ...(input.negative_prompt?.trim() ? [{ text: input.negative_prompt, weight: -1 }] : [])],
        ...size,
        steps: input.num_inference_steps ?? engine.defaults.steps,
        cfgScale: input.guidance_scale ?? engine.defaults.cfgScale,
        samples: input.num_images,
        seed: input.seed ?? 0,
        sampler: engine.defaults.sampler,
        outputFormat: input.output_format ?? input.format,
      },
      (input.loras ?? []).map((l) => ({ name: l.path, weight: l.scale })),
      'loras',
    );
    return { job: { kind: 'text-to-image', params }, safetyChecker: input.enable_safety_checker };
  };

  const urlsOf = (app: string, id: string) => {
    const at = `${base()}/fal/queue/${app}/requests/${id}`;
    return { response_url: at, status_url: `${at}/status`, cancel_url: `${at}/cancel` };
  };

  /** A finished job as fal's output; a failed or canceled one is its error. */
  const outputOf = async (record: JobRecord, object: JobObject) => {
    const failure = endedAsError(record, object);
    if (failure) throw failure;
    const meta = record.dialect ? (JSON.parse(record.dialect) as Partial<FalJobMeta>) : {};
    return falOutput(object, meta.prompt ?? '');
  };

  const statusOf = (app: string, object: JobObject, logs: boolean) => ({
    status: STATUS[object.status],
    request_id: object.id,
    ...(object.status === 'queued' ? { queue_position: object.queue_position ?? 0 } : {}),
    ...urlsOf(app, object.id),
    logs: logs && object.progress?.steps ? [{ message: `step ${object.progress.step}/${object.progress.steps}`, level: 'INFO', source: 'user', timestamp: new Date().toISOString() }] : null,
  });

  /** Makes the job; `sync`: fal.run's answer, once it ends (SYNC_WAIT; past it, the queue's answer). */
  const submit = async (req: Request, res: Response, app: string, sync: boolean, falWebhook?: string) => {
    const engine = appEngine(app);
    const { job, safetyChecker } = build(req, engine, req.body ?? {});
    const cost = jobCost(prices, engine, job);
    // fal_webhook: called once the request ends, with fal's webhook body
    const webhook = falWebhook === undefined ? undefined : { url: falWebhook };
    if (isDryRun(req)) {
      await checkWebhook(config, webhook);
      res.json(dryRun(engine.id, job, cost, await credits.balance(req.accountId!)));
      return;
    }
    const prompt = job.kind === 'text-to-image' ? (job.params.prompts.find((p) => (p.weight ?? 1) > 0)?.text ?? '') : '';
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs: {}, cost, webhook, dialect: { name: 'fal', app, prompt }, safetyChecker });
    if (repeated) res.set('Idempotent-Replayed', 'true');
    // where fal's client reads a response's request id
    res.set(REQUEST_ID, record.id);
    if (sync) {
      const snapshot = await jobs.waitForEnd(record, config.syncWait * 1000);
      const object = await jobs.describe(record, snapshot);
      if (TERMINAL_STATUSES.has(object.status)) {
        res.json(await outputOf(record, object));
        return;
      }
      res.status(202);
    }
    const object = await jobs.describeQueued(record);
    res.json({ request_id: record.id, ...urlsOf(app, record.id), queue_position: object.queue_position ?? 0 });
  };
  const status = async (req: Request, res: Response, app: string, id: string) => {
    const record = await jobs.getOwn(req.accountId!, id);
    res.set(REQUEST_ID, record.id);
    res.json(statusOf(app, await jobs.describe(record), req.query.logs === '1'));
  };
  /** The status as server-sent events until it is COMPLETED (fal's status stream). */
  const statusStream = async (req: Request, res: Response, app: string, id: string) => {
    const record = await jobs.getOwn(req.accountId!, id);
    res.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' }).flushHeaders();
    let closed = false;
    req.on('close', () => (closed = true));
    // as long as a status may matter to a client: the stream ends at COMPLETED, or after 10 minutes
    const until = Date.now() + 600_000;
    for (let last = ''; !closed && Date.now() < until; ) {
      const object = await jobs.describe(record);
      const body = JSON.stringify(statusOf(app, object, req.query.logs === '1'));
      if (body !== last) res.write(`data: ${body}\n\n`);
      last = body;
      if (TERMINAL_STATUSES.has(object.status)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    res.end();
  };
  const result = async (req: Request, res: Response, id: string) => {
    const record = await jobs.getOwn(req.accountId!, id);
    res.set(REQUEST_ID, record.id);
    const object = await jobs.describe(record);
    if (!TERMINAL_STATUSES.has(object.status)) throw new ServiceError('conflict', `request ${id} is still ${object.status === 'queued' ? 'in the queue' : 'in progress'}: its result is not there yet`);
    res.json(await outputOf(record, object));
  };
  const cancel = async (req: Request, res: Response, id: string) => {
    const record = await jobs.getOwn(req.accountId!, id);
    await jobs.cancel(record);
    res.status(202).json({ status: 'CANCELLATION_REQUESTED' });
  };

  const generate = [requireScope('generate'), rateLimit(deps.limiter), ...jsonBody('1mb')];
  const app = (req: Request) => `${String(req.params.owner)}/${String(req.params.alias)}`;
  const falWebhookOf = (value: unknown) => (typeof value === 'string' && value ? value : undefined);
  router.post('/fal/queue/:owner/:alias', generate, (req: Request, res: Response) => submit(req, res, app(req), false, falWebhookOf(req.query.fal_webhook)));
  router.get('/fal/queue/:owner/:alias/requests/:id/status', (req: Request, res: Response) => status(req, res, app(req), String(req.params.id)));
  router.get('/fal/queue/:owner/:alias/requests/:id/status/stream', (req: Request, res: Response) => statusStream(req, res, app(req), String(req.params.id)));
  router.get('/fal/queue/:owner/:alias/requests/:id', (req: Request, res: Response) => result(req, res, String(req.params.id)));
  router.put('/fal/queue/:owner/:alias/requests/:id/cancel', requireScope('generate'), (req: Request, res: Response) => cancel(req, res, String(req.params.id)));

  // the client's proxy: the fal URL it would have called, in x-fal-target-url, served here
  const proxied = async (req: Request, res: Response) => {
    const target = req.get('x-fal-target-url') ?? '';
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new ServiceError('bad_request', `x-fal-target-url: ${JSON.stringify(target.slice(0, 200))} is not a URL`, { field: 'x-fal-target-url' });
    }
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const refuse = () => new ServiceError('bad_request', `x-fal-target-url: ${url.origin}${url.pathname} is not a fal run or queue URL sdq serves (https://fal.run/<app>, https://queue.fal.run/<app>[/requests/<id>[/status|/cancel]])`, { field: 'x-fal-target-url' });
    if (url.protocol !== 'https:' || parts.length < 2) throw refuse();
    const name = `${parts[0]}/${parts[1]}`;
    const rest = parts.slice(2);
    const method = req.method;
    if (url.hostname === 'fal.run' && rest.length === 0 && method === 'POST') return submit(req, res, name, true);
    if (url.hostname !== 'queue.fal.run') throw refuse();
    if (rest.length === 0 && method === 'POST') return submit(req, res, name, false, falWebhookOf(url.searchParams.get('fal_webhook')));
    if (rest[0] !== 'requests' || !rest[1]) throw refuse();
    const id = rest[1];
    req.query.logs = url.searchParams.get('logs') ?? undefined;
    if (rest.length === 2 && method === 'GET') return result(req, res, id);
    if (rest.length === 3 && rest[2] === 'status' && method === 'GET') return status(req, res, name, id);
    if (rest.length === 4 && rest[2] === 'status' && rest[3] === 'stream' && method === 'GET') return statusStream(req, res, name, id);
    if (rest.length === 3 && rest[2] === 'cancel' && method === 'PUT') return cancel(req, res, id);
    throw refuse();
  };
  router.post('/fal/proxy', generate, proxied);
  router.put('/fal/proxy', requireScope('generate'), proxied);
  router.get('/fal/proxy', proxied);

  // fal.run, and the AI SDK's fal provider: POST <base>/<app>, answered when the images are there
  router.post('/fal/:owner/:alias', generate, (req: Request, res: Response) => submit(req, res, app(req), true));
  return router;
}
