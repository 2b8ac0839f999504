/**
 * The part every dialect shares once a request is a valid job: the webhook address, the worker and
 * memory checks, the hold and the job (idempotent under Idempotency-Key); waiting for it as the
 * synchronous dialects do; and a job's end as the error a dialect answers. Everything the client could
 * get wrong has been refused before this, so nothing is held for a 4xx.
 */
import type { Request, Response } from 'express';
import type { EngineInfo } from '@sdq/pipeline/engines';
import { type ErrorName, type JobObject, ServiceError, type StoredArtifact, TERMINAL_STATUSES } from '@sdq/contracts';
import { type Cost, type CreditsService, hashBody, MAX_IDEMPOTENCY_KEY_LENGTH, type PriceTable, type RateLimiter } from '@sdq/credits';
import { validateWebhookUrl } from '@sdq/webhooks';
import type { AdapterCatalog } from '../adapters';
import type { PromptBlocklist } from '../moderation';
import type { AppDeps } from '../app';
import type { Config } from '../config';
import type { JobDialect, JobInputs, JobsService, JobWebhook, NewJob } from '../jobs.service';
import type { EnginePresence } from '../presence';
import { dryRun } from '../pricing';
import { bindLog } from '../request-log';
import type { JobRecord } from '../store';

/** What the dialects and the kit use of the app's parts. */
export type GenerationDeps = Pick<AppDeps, 'config' | 'engines' | 'aliases' | 'presence' | 'jobs' | 'prices' | 'credits' | 'limiter'> & { adapters: AdapterCatalog; blocklist: PromptBlocklist };

/** `Prefer: respond-async` and `Prefer: wait=N` (RFC 7240); N is kept within 1-60 s. `applied`: the Preference-Applied value, if any. */
export function parsePrefer(header: string | undefined): { async: boolean; wait?: number; applied?: string } {
  const prefs = (header ?? '').split(',').map((p) => p.trim().toLowerCase());
  const waitPref = prefs.find((p) => p.startsWith('wait='));
  const given = waitPref ? Number(waitPref.slice(5)) : undefined;
  const wait = given === undefined || !Number.isFinite(given) ? undefined : Math.min(60, Math.max(1, Math.floor(given)));
  const async = prefs.includes('respond-async');
  return { async, wait, applied: wait !== undefined ? `wait=${wait}` : async ? 'respond-async' : undefined };
}

/** `?dry_run=true`: price the request, queue nothing. */
export function isDryRun(req: Request): boolean {
  const value = req.query.dry_run;
  if (value === undefined) return false;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new ServiceError('bad_request', `dry_run: must be true or false (got ${JSON.stringify(value)})`, { field: 'dry_run' });
}

/** The Idempotency-Key header, checked; undefined when absent. */
function idempotencyKey(req: Request): string | undefined {
  const key = req.get('idempotency-key');
  if (key === undefined) return undefined;
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new ServiceError('invalid_idempotency_key', `Idempotency-Key: must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters (got ${key.length})`);
  }
  return key;
}

/** What "the same request" means for an Idempotency-Key: the same endpoint, fields and file bytes. */
function fingerprint(req: Request): string {
  if (!req.multipart) return hashBody({ path: req.path, body: req.body ?? null });
  // Files by their SHA-256, taken while they streamed to disk; fields with every value, in order.
  const files = [...req.multipart.files].map(([field, file]) => [field, file.sha256]).sort();
  return hashBody({ path: req.path, fields: [...req.multipart.fields], files });
}

/** A job's webhook address, checked against the SSRF rules (again when each delivery connects: DNS may change). */
export async function checkWebhook(config: Config, webhook: JobWebhook | undefined): Promise<void> {
  if (!webhook?.url) return;
  const check = await validateWebhookUrl(webhook.url, config.webhooks.allowedHosts);
  if (!check.ok) throw new ServiceError('invalid_webhook', `webhook: ${check.message}`, { field: 'webhook' });
}

export async function submitJob(
  deps: GenerationDeps,
  req: Request,
  engine: EngineInfo,
  built: { job: NewJob; inputs: JobInputs; webhook?: JobWebhook; cost: Cost; dialect?: JobDialect; safetyChecker?: boolean },
): Promise<{ record: JobRecord; repeated: boolean }> {
  const { config, jobs } = deps;
  await checkWebhook(config, built.webhook);
  // Nothing is held for a job no worker would take (REQUIRE_WORKER=false queues it for one to come).
  // an engine a worker is loading is taken: its jobs wait in its queue as for any busy worker
  if (config.requireWorker && (await deps.presence.workers(engine.id)) === 0 && (await deps.presence.stateOf(engine.id)).state !== 'loading') {
    const why = await deps.presence.whyUnserved(engine.id);
    throw new ServiceError('engine_unavailable', `engine ${engine.id}: no live worker serves it: ${why}; retry once a worker serves it`, { headers: { 'Retry-After': '10' } });
  }
  // A size whose one image fits no worker's memory bound would fail there: refused here, before any hold.
  // (enhance runs tiles of the engine's native size, upscale no diffusion: neither is sized by the request)
  if (built.job.kind === 'text-to-image' || built.job.kind === 'image-to-image' || built.job.kind === 'masking' || built.job.kind === 'animation') {
    const { width, height, hires } = built.job.params;
    // hires fix's second pass runs at its own size: that one must fit too
    const problem = (await deps.presence.memoryProblem(engine.id, width, height)) ?? (hires ? await deps.presence.memoryProblem(engine.id, hires.width, hires.height) : undefined);
    if (problem) throw new ServiceError('invalid_pixel_count', problem, { field: 'width' });
  }
  // the account's safety mode (else SAFETY_MODE), recorded on the job: the worker applies it
  built.job.params.safety = await jobs.safetyFor(req.accountId!, built.safetyChecker ?? true);
  const key = idempotencyKey(req);
  const submitted = await jobs.submit(req.accountId!, engine.id, built.job, built.inputs, {
    cost: built.cost,
    idempotency: key === undefined ? undefined : { key, bodyHash: fingerprint(req) },
    webhook: built.webhook,
    keyId: req.keyId,
    dialect: built.dialect,
  });
  bindLog(req, { job_id: submitted.record.id });
  // every dialect's answer names the job it made, an error answer too (the job failed or was canceled)
  req.res?.set('X-Job-Id', submitted.record.id);
  return submitted;
}

/**
 * A job that ended otherwise than succeeded, as the error its synchronous answer is: canceled is 409
 * canceled; a failure keeps its catalogue name, and an internal one becomes a 500 naming the job.
 * `what` names the job in the message ("job", or v2beta's "generation").
 */
export function endedAsError(record: JobRecord, object: JobObject, what = 'job'): Error | undefined {
  if (object.status === 'canceled') return new ServiceError('canceled', `${what} ${record.id} was canceled`);
  if (object.status !== 'failed') return undefined;
  const { name, message } = object.error!;
  if (name === 'internal_error') return new Error(`job ${record.id} failed: ${message}`);
  return new ServiceError(name as ErrorName, message);
}

/**
 * For the dialects that answer when the job ends (OpenAI, A1111): queues the job (its webhook from
 * X-Webhook-URL), waits up to SYNC_WAIT (or as Prefer asks), and returns its stored artifacts once it succeeded. A job still running is answered here (202, the job
 * object) and undefined returned; a canceled or failed job is thrown as its catalogue error.
 */
export async function submitAndWait(
  deps: GenerationDeps,
  req: Request,
  res: Response,
  engine: EngineInfo,
  built: { job: NewJob; inputs: JobInputs; cost: Cost },
): Promise<{ record: JobRecord; object: JobObject; artifacts: StoredArtifact[] } | undefined> {
  // these dialects have no webhook field: the X-Webhook-URL header, else the account's default
  const webhookUrl = req.get('x-webhook-url');
  // ?dry_run=true prices the request as on Stability's routes: nothing queued, held or charged
  if (isDryRun(req)) {
    await checkWebhook(deps.config, webhookUrl ? { url: webhookUrl } : undefined);
    res.json(dryRun(engine.id, built.job, built.cost, await deps.credits.balance(req.accountId!)));
    return undefined;
  }
  const { record, repeated } = await submitJob(deps, req, engine, { ...built, webhook: webhookUrl ? { url: webhookUrl } : undefined });
  if (repeated) res.set('Idempotent-Replayed', 'true');
  // sdq's addition to these dialects, as on Stability's routes: Prefer: respond-async or wait=N
  const prefer = parsePrefer(req.get('prefer'));
  const waitMs = prefer.wait !== undefined ? prefer.wait * 1000 : prefer.async ? 0 : deps.config.syncWait * 1000;
  // 0 looks once: a replayed job may have ended already
  const snapshot = await deps.jobs.waitForEnd(record, waitMs);
  const object = await deps.jobs.describe(record, snapshot);
  if (!TERMINAL_STATUSES.has(object.status)) {
    if (prefer.applied) res.set('Preference-Applied', prefer.applied);
    res.status(202).set('Location', object.urls.self).json(object);
    return undefined;
  }
  const failure = endedAsError(record, object);
  if (failure) throw failure;
  return { record, object, artifacts: snapshot!.result!.artifacts };
}
