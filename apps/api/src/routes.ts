/** The other routes: engines, jobs (incl. SSE), artifacts, health (admin: admin.routes.ts; user: user.routes.ts). */
import { type Request, type Response, Router } from 'express';
import type { EngineInfo } from '@sdq/pipeline/engines';
import {
  errorNameForField,
  type JobObject,
  ListJobsQuery,
  ServiceError,
  type Storage,
  StorageNotFoundError,
  StorageUnavailableError,
  TERMINAL_STATUSES,
} from '@sdq/contracts';
import { checkLocalSignature, LOCAL_ARTIFACTS_PATH } from '@sdq/storage';
import type { PriceTable } from '@sdq/credits';
import { requireScope } from './auth';
import type { Config } from './config';
import type { Shutdown } from './shutdown';
import { Slots } from './in-flight';
import type { JobsService } from './jobs.service';
import { enginePricing } from './pricing';
import { parseBody } from './validate';
import type { EnginePresence } from './presence';
import type { Store } from './store';

/** What an engine can do (sdq's addition): family, sizes, samplers, modes, defaults. */
function capabilities(engine: EngineInfo) {
  if (engine.kind === 'upscale') {
    return { family: null, modes: engine.modes, native_width: null, native_height: null, sizes: null, samplers: null, defaults: { steps: null, cfg_scale: null, sampler: null } };
  }
  const e = engine;
  return {
    family: e.family ?? null,
    modes: e.modes,
    native_width: e.nativeWidth,
    native_height: e.nativeHeight,
    sizes: e.sizes ? { step: e.sizes.step, min_side: e.sizes.minSide, max_pixels: e.sizes.maxPixels, allowed: e.sizes.allowed ?? null } : null,
    samplers: e.samplers ?? null,
    // the sampler a request without one runs: the operator's or family's default, else the folder's scheduler
    defaults: { steps: e.defaults.steps, cfg_scale: e.defaults.cfgScale, sampler: e.defaults.sampler ?? e.schedulerSampler ?? null },
  };
}

/** Stability's engine fields, each engine's prices and capabilities beside them; each alias is listed as an engine of its own. */
export function engineRoutes(engines: Map<string, EngineInfo>, aliases: Map<string, string>, prices: PriceTable, presence: EnginePresence): Router {
  const router = Router();
  router.get(
    '/v1/engines/list',
    async (_req, res) => {
      const served = new Map(await Promise.all([...engines.keys()].map(async (id) => [id, await presence.stateOf(id)] as const)));
      const entry = (id: string, e: EngineInfo, aliasOf?: string) => ({
        id,
        name: id,
        description: aliasOf ? `${e.description} (alias of ${aliasOf})` : e.description,
        type: 'PICTURE',
        pricing: enginePricing(prices, e),
        capabilities: { ...capabilities(e), workers: served.get(e.id)?.workers ?? 0, loaded_workers: served.get(e.id)?.loaded ?? 0, state: served.get(e.id)?.state ?? 'unserved' },
        alias_of: aliasOf ?? null,
      });
      res.json([...[...engines.values()].map((e) => entry(e.id, e)), ...[...aliases].map(([alias, id]) => entry(alias, engines.get(id)!, id))]);
    },
  );
  return router;
}

export function jobRoutes(jobs: JobsService, shutdown?: Shutdown, streamLimits: Config['http']['eventStreams'] = { perKey: 20, perAccount: 100, total: 10_000 }): Router {
  // each open stream holds a socket: one key must not hold them all (the process's file limit with them)
  const streams = new Slots(streamLimits, { what: 'event streams', perKey: 'MAX_EVENT_STREAMS_PER_KEY', perAccount: 'MAX_EVENT_STREAMS_PER_ACCOUNT', total: 'MAX_EVENT_STREAMS' });
  const router = Router();
  router.get(
    '/v1/jobs',
    async (req, res) => {
      const query = parseBody(ListJobsQuery, req.query);
      res.json(await jobs.list(req.accountId!, query.limit, query.cursor));
    },
  );
  router.get(
    '/v1/jobs/:id',
    async (req, res) => {
      res.json(await jobs.describe(await jobs.getOwn(req.accountId!, String(req.params.id))));
    },
  );
  router.post(
    '/v1/jobs/:id/cancel',
    requireScope('generate'),
    async (req, res) => {
      const object = await jobs.cancel(await jobs.getOwn(req.accountId!, String(req.params.id)));
      res.status(TERMINAL_STATUSES.has(object.status) ? 200 : 202).json(object);
    },
  );
  router.get('/v1/jobs/:id/events', (req, res) => streamEvents(jobs, req, res, shutdown, streams));
  return router;
}

/**
 * Server-Sent Events: `queued`, `started`, `progress` (per step, `{id, step, steps}`) and `completed`
 * (the final job object), then the stream ends. `queued`, `started` and `completed` carry the job object.
 */
async function streamEvents(jobs: JobsService, req: Request, res: Response, shutdown: Shutdown | undefined, streams: Slots): Promise<void> {
  const record = await jobs.getOwn(req.accountId!, String(req.params.id));
  const release = streams.take(req.keyId ?? req.accountId!, req.accountId!);
  res.once('close', release);
  res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  res.flushHeaders();
  let closed = false;
  const send = (event: string, data: unknown) => {
    if (!closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const finish = async () => {
    if (closed) return;
    // The end's charge first (closing a hold is once only, whoever does it): the final object then
    // carries credits_charged, which it lacked when the worker's settle had not landed yet.
    await jobs.closeHold(record.id).catch(() => {});
    send('completed', await jobs.describe(record));
    closed = true;
    res.end();
  };
  // The snapshot below and live events can overlap: `started` goes out once and progress only forwards,
  // so a client never sees step 5 followed by a stale step 4.
  let startedSent = false;
  let lastStep = -1;
  const sendStarted = (job: JobObject) => {
    if (startedSent) return;
    startedSent = true;
    send('started', job);
  };
  const sendProgress = (progress: { step: number; steps: number }) => {
    if (progress.step <= lastStep) return;
    lastStep = progress.step;
    send('progress', { id: record.id, ...progress });
  };
  // Events are handled one at a time, in arrival order, so a late `progress` never follows `completed`.
  let chain = Promise.resolve();
  const stop = jobs.subscribe(record.id, (event) => {
    chain = chain
      .then(async () => {
        if (event.type === 'active') sendStarted(await jobs.describe(record));
        else if (event.type === 'progress') sendProgress(event.progress);
        else await finish();
      })
      .catch((err) => req.log.warn({ err }, 'event stream error'));
  });
  const heartbeat = setInterval(() => !closed && res.write(': keep-alive\n\n'), 15_000);
  // A stopping API ends the stream with a reason, so the client reconnects rather than sees it break.
  const untrack = shutdown?.track(() => {
    send('shutdown', { id: record.id, reason: 'the API is restarting; reconnect to follow the job' });
    closed = true;
    res.end();
  });
  const cleanup = () => {
    closed = true;
    stop();
    clearInterval(heartbeat);
    untrack?.();
  };
  res.on('close', cleanup);
  // The current state first (subscribed already, so nothing is lost in between).
  const current: JobObject = await jobs.describe(record);
  chain = chain.then(async () => {
    if (TERMINAL_STATUSES.has(current.status)) return finish();
    if (current.status === 'queued') send('queued', current);
    else {
      sendStarted(current);
      if (current.progress) sendProgress(current.progress);
    }
  });
  await chain;
}

/** Local storage's signed URLs (no API key: the signature is the credential). */
export function artifactRoutes(storage: Storage, config: Config): Router {
  const router = Router();
  if (!('local' in config.storage)) return router;
  const secret = config.storage.local.secret;
  router.get(
    `${LOCAL_ARTIFACTS_PATH}*key`,
    async (req, res) => {
      const key = ([] as string[]).concat(req.params.key as unknown as string[]).join('/');
      // A repeated parameter arrives as an array: only one plain value of each is a signature.
      const one = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? undefined : '');
      const problem = checkLocalSignature(secret, key, one(req.query.expires), one(req.query.signature));
      if (problem === 'expired') throw new ServiceError('permission_denied', 'this artifact URL has expired; fetch the job again for a fresh one');
      if (problem) throw new ServiceError('permission_denied', `this artifact URL is ${problem === 'missing' ? 'not signed' : 'not validly signed'}`);
      try {
        const data = await storage.get(key);
        const ext = key.split('.').pop();
        const type = ext === 'png' ? 'image/png' : ext === 'jpg' ? 'image/jpeg' : ext === 'webp' ? 'image/webp' : 'application/octet-stream';
        // The signed URL is the capability (no cookie, no key): any page may read it, as a presigned S3 URL
        // with CORS. The studio opened on another host name than PUBLIC_URL's reads init images so.
        res.set({ 'Content-Type': type, 'Cache-Control': 'private, max-age=60', 'Access-Control-Allow-Origin': '*', 'X-Content-Type-Options': 'nosniff' }).send(data);
      } catch (err) {
        if (err instanceof StorageNotFoundError) throw new ServiceError('not_found', `artifact ${key} not found (it may have expired)`);
        throw err;
      }
    },
  );
  return router;
}

export function healthRoutes(store: Store, storage: Storage): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get(
    '/readyz',
    async (_req, res) => {
      if (!store.ready) throw new ServiceError('service_unavailable', 'Redis is unreachable');
      await store.ping();
      try {
        await storage.check();
      } catch (err) {
        const cause = err instanceof StorageUnavailableError ? 'refuses writes' : `is unreachable: ${(err as Error).name}`;
        throw new ServiceError('service_unavailable', `storage (${storage.kind}) ${cause}`);
      }
      res.json({ status: 'ready' });
    },
  );
  return router;
}
