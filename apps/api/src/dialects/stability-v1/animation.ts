/**
 * POST /v1/generation/{engine_id}/animation, sdq's own route beside Stability's: keyframes in, one
 * animated file (and every frame) out, as one job. It takes the text-to-image fields and answers as
 * they do, but an animation is long: JSON gets the job at once (202), and the file's own type
 * (`Accept: image/webp`, `image/gif`, `video/mp4`) waits up to SYNC_WAIT for its bytes.
 */
import { randomInt } from 'node:crypto';
import type { Request, Response } from 'express';
import type { GenerationEngineInfo } from '@sdq/pipeline/engines';
import {
  ANIMATION_CONTENT_TYPES,
  type AnimationFormat,
  type AnimationParams,
  AnimationRequest,
  MAX_SEED,
  ServiceError,
  TERMINAL_STATUSES,
  type TextToImageRequest,
} from '@sdq/contracts';
import type { JobsService } from '../../jobs.service';
import { dryRun, jobCost } from '../../pricing';
import { parseBody } from '../../validate';
import { resolvePrompts, applyStyle, checkSize, checkWebhook, endedAsError, type GenerationDeps, isDryRun, parsePrefer, submitJob, webhookOf } from '../../submission';
import type { generationParams as GenerationParamsOf } from './routes';

const ACCEPTABLE = ['application/json', ...Object.values(ANIMATION_CONTENT_TYPES)];

/** What the client asked to receive: the job (JSON) or the file's bytes, and the format that decides. */
function negotiate(req: Request, asked: AnimationFormat | undefined): { json: boolean; format: AnimationFormat } {
  const type = req.accepts(ACCEPTABLE);
  if (!type) throw new ServiceError('invalid_accept', `Accept: none of ${ACCEPTABLE.join(', ')} is acceptable (got ${req.headers.accept})`);
  if (type === 'application/json') return { json: true, format: asked ?? 'webp' };
  const format = (Object.keys(ANIMATION_CONTENT_TYPES) as AnimationFormat[]).find((f) => ANIMATION_CONTENT_TYPES[f] === type)!;
  if (asked !== undefined && asked !== format) throw new ServiceError('invalid_accept', `Accept: ${type} is not the format asked for (format ${asked}: ask for ${ANIMATION_CONTENT_TYPES[asked]} or application/json)`);
  return { json: false, format };
}

/** The keyframes' order and range, checked before anything is held: each mistake named with its keyframe. */
function checkKeyframes(keyframes: { frame: number }[], frames: number, maxFrames: number): void {
  if (frames > maxFrames) throw new ServiceError('invalid_frames', `frames: ${frames} is over this server's maximum of ${maxFrames} (MAX_ANIMATION_FRAMES)`, { field: 'frames' });
  const field = { field: 'keyframes' };
  if (keyframes[0].frame !== 0) throw new ServiceError('invalid_keyframes', `keyframes[0].frame: the first keyframe must be at frame 0 (got ${keyframes[0].frame})`, field);
  for (const [i, k] of keyframes.entries()) {
    if (k.frame >= frames) throw new ServiceError('invalid_keyframes', `keyframes[${i}].frame: ${k.frame} is beyond the animation's ${frames} frames (0 to ${frames - 1})`, field);
    const before = i > 0 ? keyframes[i - 1].frame : -1;
    if (k.frame === before) throw new ServiceError('invalid_keyframes', `keyframes[${i}].frame: frame ${k.frame} has two keyframes`, field);
    if (k.frame < before) throw new ServiceError('invalid_keyframes', `keyframes[${i}].frame: keyframes must be in increasing frame order (${k.frame} after ${before})`, field);
  }
}

/** The route's handler; Stability v1's routes mount it with their guard and JSON body parser. */
export function animationHandler(deps: GenerationDeps, generationParams: typeof GenerationParamsOf): (req: Request, res: Response) => Promise<void> {
  const { config, engines, aliases, jobs, prices, credits } = deps;

  const engineFor = (req: Request): GenerationEngineInfo => {
    const requested = String(req.params.engine_id);
    const engine = engines.get(aliases.get(requested) ?? requested);
    if (!engine) throw new ServiceError('not_found', `engine ${req.params.engine_id} not found (GET /v1/engines/list lists them)`);
    if (engine.kind !== 'generation' || !engine.family || !engine.modes.includes('text-to-image')) throw new ServiceError('bad_request', `engine ${engine.id} cannot make animations (it does ${engine.modes.join(', ')})`);
    return engine;
  };

  const handle = async (req: Request, res: Response) => {
    const engine = engineFor(req);
    if (!req.is('application/json')) throw new ServiceError('invalid_mime_type', `body: this endpoint takes application/json (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' });
    const raw = req.body as Record<string, unknown>;
    const body = parseBody(AnimationRequest, raw);
    const accept = negotiate(req, raw.format === undefined ? undefined : body.format);
    checkKeyframes(body.keyframes, body.frames, config.maxAnimationFrames);
    if (body.mode === 'feedback' && !engine.modes.includes('image-to-image')) throw new ServiceError('bad_request', `mode: feedback makes each frame an image-to-image of the previous one, which ${engine.id} cannot do (it has no vae_encoder); use travel`, { field: 'mode' });
    const width = body.width ?? engine.nativeWidth;
    const height = body.height ?? engine.nativeHeight;
    checkSize(width, height, config.maxPixels, engine);
    const formatProblem = await deps.presence.animationFormatProblem(engine.id, accept.format);
    if (formatProblem) throw new ServiceError('unsupported_format', formatProblem, { field: 'format' });

    // seeds fixed now: a retried job (its worker died) must draw the frames it stored already
    const keyframes = body.keyframes.map((k) => ({ frame: k.frame, prompts: applyStyle(engine, k.text_prompts, body.style_preset), seed: k.seed || randomInt(1, MAX_SEED) }));
    const first = { ...body, text_prompts: body.keyframes[0].text_prompts, seed: keyframes[0].seed, samples: 1 } satisfies TextToImageRequest;
    const base = generationParams(engine, raw, first, width, height, 'png');
    // LoRA tags in any keyframe's prompts come out of that keyframe's text (the same prompt objects)
    const adapted = resolvePrompts(deps, req, engine, { ...base, prompts: keyframes.flatMap((k) => k.prompts) }, body.loras);
    const params: AnimationParams = {
      ...adapted,
      prompts: keyframes[0].prompts,
      animation: { frames: body.frames, keyframes, interpolation: body.interpolation, mode: body.mode, strength: body.strength, fps: body.fps, format: accept.format, loop: body.loop },
    };
    const job = { kind: 'animation' as const, params };
    const webhook = webhookOf(body);
    const cost = jobCost(prices, engine, job);
    if (isDryRun(req)) {
      await checkWebhook(config, webhook);
      res.json(dryRun(engine.id, job, cost, await credits.balance(req.accountId!)));
      return;
    }
    const { record, repeated } = await submitJob(deps, req, engine, { job, inputs: {}, webhook, cost });
    if (repeated) res.set('Idempotent-Replayed', 'true');
    const prefer = parsePrefer(req.get('prefer'));
    // JSON without a wait gets the job at once; the file's type waits for its bytes (SYNC_WAIT)
    const waitMs = prefer.wait !== undefined ? prefer.wait * 1000 : accept.json || prefer.async ? 0 : config.syncWait * 1000;
    const snapshot = await jobs.waitForEnd(record, waitMs);
    await answer(res, jobs, record, snapshot, accept.json || prefer.async || prefer.wait !== undefined, prefer.applied);
  };

  return handle;
}

async function answer(
  res: Response,
  jobs: JobsService,
  record: Parameters<JobsService['describe']>[0],
  snapshot: Awaited<ReturnType<JobsService['waitForEnd']>>,
  asJob: boolean,
  applied: string | undefined,
): Promise<void> {
  const object = await jobs.describe(record, snapshot);
  if (asJob || !TERMINAL_STATUSES.has(object.status)) {
    if (applied) res.set('Preference-Applied', applied);
    res.set('Location', object.urls.self).status(TERMINAL_STATUSES.has(object.status) ? 200 : 202).json(object);
    return;
  }
  const failure = endedAsError(record, object);
  if (failure) throw failure;
  const [file, ...frames] = snapshot!.result!.artifacts;
  // the file is CONTENT_FILTERED when the safety checker filtered any of its frames
  const filtered = frames.some((f) => f.finish_reason === 'CONTENT_FILTERED');
  res.status(200).set({ 'Content-Type': file.content_type, Seed: String(file.seed), 'Finish-Reason': filtered ? 'CONTENT_FILTERED' : file.finish_reason }).send(await jobs.readArtifact(file.key));
}
