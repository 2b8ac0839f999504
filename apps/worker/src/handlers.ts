/**
 * One handler per job name: download the inputs, run the engine, upload the images, return the
 * JobResult. Handlers know nothing of BullMQ: they throw JobFailure for what must not be retried and
 * any other error for what may succeed on a retry; queue.ts turns that into BullMQ's terms.
 */
import type { Logger } from 'pino';
import {
  ANIMATION_CONTENT_TYPES,
  animationKey,
  artifactKey,
  CONTENT_TYPES,
  type ErrorName,
  errorNameForPipelineCode,
  type JobName,
  type JobPayloadOf,
  type JobResult,
  type Storage,
  StorageNotFoundError,
  type StoredArtifact,
  type GenerationParams,
} from '@sdq/contracts';
import { checkEngineSize } from '@sdq/pipeline/engines';
import { isInputError, PipelineError } from '@sdq/pipeline/errors';
import { animate, animationEncoder, type DiffusionPipeline, EmbeddingFormatError, frameSeed, hiresFix, insertPngText, LoraFormatError, type PixelUpscale, readPngText, SafetensorsError, upscalerKind } from '@sdq/pipeline';
import { tiledEnhance } from '@sdq/pipeline/tiled-enhance';
import type { GeneratedImage as Image, ProgressEvent } from '@sdq/pipeline/types';
import type { LoadedEngine } from './engines';
import { LoraFileError, SetRoomError } from './lora-sets';

/** A failure that a retry cannot fix: the job fails at once with this catalogue name and message. */
export class JobFailure extends Error {
  constructor(
    readonly code: ErrorName,
    message: string,
  ) {
    super(message);
    this.name = 'JobFailure';
  }
}

export interface JobContext<K extends JobName> {
  payload: JobPayloadOf<K>;
  engine: LoadedEngine;
  storage: Storage;
  /** Aborted when the job is canceled (or the worker must stop). */
  signal: AbortSignal;
  /** Reports a finished step (counting from 1) out of steps; an animation adds its frames stored. */
  progress(step: number, steps: number, frames?: { done: number; total: number }): void;
  /** FFMPEG_PATH: MP4 animations. */
  ffmpegPath: string;
  /** Another engine this worker serves (hires fix's upscaler engine), loaded for the job if it is not; undefined if it cannot be. */
  engineById(id: string): Promise<LoadedEngine | undefined>;
  log: Logger;
}

export type JobHandler<K extends JobName> = (ctx: JobContext<K>) => Promise<JobResult>;
export type JobHandlers = { [K in JobName]: JobHandler<K> };

function onProgress<K extends JobName>(ctx: JobContext<K>) {
  return ({ step, total }: ProgressEvent) => ctx.progress(step, total);
}

function generationEngine<K extends JobName>(ctx: JobContext<K>) {
  if (!('pipeline' in ctx.engine)) throw new JobFailure('bad_request', `engine ${ctx.engine.info.id} is an upscale engine: it cannot run ${ctx.payload.kind} jobs`);
  return ctx.engine;
}

/** A stored input; a missing one will not appear on a retry. */
async function input<K extends JobName>(ctx: JobContext<K>, key: string): Promise<Buffer> {
  try {
    return await ctx.storage.get(key);
  } catch (err) {
    if (err instanceof StorageNotFoundError) throw new JobFailure('not_found', `the job's input ${key} is gone from storage (expired or removed)`);
    throw new Error(`storage: could not read ${key}: ${(err as Error).message}`, { cause: err });
  }
}

/** Uploads each image to generations/<job id>/<index>.<ext>. */
async function store<K extends JobName>(ctx: JobContext<K>, images: Image[]): Promise<JobResult> {
  const format = ctx.payload.params.outputFormat;
  const artifacts: StoredArtifact[] = [];
  for (const [index, image] of images.entries()) {
    const key = artifactKey(ctx.payload.jobId, index, format);
    const contentType = image.contentType || CONTENT_TYPES[format];
    try {
      await ctx.storage.put(key, image.data, contentType);
    } catch (err) {
      // The images written before this one are no job's result: gone now, not at the job's expiry (a
      // retry writes them again). Best effort: storage that refused this write may refuse the delete too.
      if (index > 0) await ctx.storage.deletePrefix(`generations/${ctx.payload.jobId}/`).catch(() => {});
      throw new Error(`storage: could not write ${key}: ${(err as Error).message}`, { cause: err });
    }
    artifacts.push({ key, seed: image.seed, finish_reason: image.finishReason, content_type: contentType, width: image.width, height: image.height });
  }
  return { artifacts };
}

async function generate<K extends 'text-to-image' | 'image-to-image' | 'masking'>(ctx: JobContext<K>, initImage?: Buffer, maskImage?: Buffer): Promise<JobResult> {
  const engine = generationEngine(ctx);
  const payload = ctx.payload as JobPayloadOf<'text-to-image' | 'image-to-image' | 'masking'>;
  const { params } = payload;
  // The API refuses these already; a payload from elsewhere must not size the worker out of memory either.
  const problem = checkEngineSize(ctx.engine.info, params.width, params.height) ?? (params.hires ? checkEngineSize(ctx.engine.info, params.hires.width, params.hires.height) : undefined);
  if (problem) throw new JobFailure('invalid_height_or_width', problem);
  // batched with compatible jobs running now when WORKER_BATCH_SIZE > 1 (same images either way)
  // the job's parameters are the pipeline's request as they are (GenerateRequest is made of
  // GenerationParams), plus what only the worker has: the input images, progress and cancellation
  const { stylePreset: _applied, loras, embeddings, hires, ...request } = params;
  const call = { ...request, initImage, maskImage, engineId: payload.engineId, onProgress: onProgress(ctx), signal: ctx.signal };
  return withAdapters(ctx, params, async (pipeline) => {
    // hires fix runs its two passes alone, never batched
    const result = hires ? await hiresFix(pipeline ?? engine.pipeline, { ...call, hires }, await pixelUpscaleOf(ctx, hires.upscaler)) : pipeline ? await pipeline.generate(call) : await engine.generate(call);
    ctx.log.info({ ms: Math.round(result.timings.totalMs), onnx_ms: Math.round(result.timings.onnxMs), truncated_tokens: result.truncatedTokens, runs: result.runs }, 'generated');
    return store(ctx, result.images);
  });
}

/** Hires fix's upscaler engine, when it names one: served by this worker beside the job's engine, loaded for it if need be. */
async function pixelUpscaleOf<K extends JobName>(ctx: JobContext<K>, name: string): Promise<PixelUpscale | undefined> {
  if (upscalerKind(name) !== 'engine') return undefined;
  const other = await ctx.engineById(name);
  if (!other || !('upscaler' in other)) throw new JobFailure('bad_request', `hires upscaler ${name} is not an upscale engine this worker can load: serve it beside ${ctx.payload.engineId} (ENGINES)`);
  return async (png) => (await other.upscaler.upscale({ image: png, outputFormat: 'png', safety: 'off', signal: ctx.signal })).data;
}

/**
 * Runs a job on the pipeline its adapters need: none given, the engine's own (run is called with
 * undefined, the batcher's path); LoRAs or embeddings, a pipeline of the set's own (blended once, kept for
 * the next job with the same set), run alone: batching groups only jobs of one pipeline.
 */
async function withAdapters<K extends 'text-to-image' | 'image-to-image' | 'masking' | 'enhance' | 'animation', T>(ctx: JobContext<K>, params: GenerationParams, run: (pipeline: DiffusionPipeline | undefined) => Promise<T>): Promise<T> {
  const engine = generationEngine(ctx);
  const { loras = [], embeddings = [] } = params;
  if (!loras.length && !embeddings.length) return run(undefined);
  let set: Awaited<ReturnType<typeof engine.loraSets.use>>;
  try {
    set = await engine.loraSets.use(loras, embeddings);
  } catch (err) {
    if (err instanceof LoraFileError || err instanceof LoraFormatError || err instanceof SafetensorsError || err instanceof EmbeddingFormatError) throw new JobFailure(err instanceof EmbeddingFormatError ? 'bad_request' : 'invalid_lora', (err as Error).message);
    if (err instanceof SetRoomError && err.never) throw new JobFailure('bad_request', err.message);
    // no room while other engines run jobs: left to retry, as a runtime fault is
    throw err;
  }
  try {
    for (const [name, r] of set.applied) if (r.unmatched.length) ctx.log.warn({ lora: name, matched: r.matched, unmatched: r.unmatched.length, first: r.unmatched[0] }, 'LoRA modules no layer took');
    ctx.log.info({ loras: loras.map((l) => `${l.name}:${l.weight}`), embeddings, adapter_set_cached: set.cached }, 'adapters');
    return await run(set.pipeline);
  } finally {
    set.release();
  }
}

/** The PNG text chunk a stored animation frame the safety checker filtered carries, for a resumed job. */
const FILTERED_TEXT = 'sdq-finish-reason';

/**
 * An animation: its frames stored as PNG artifacts as they finish (frame i at artifactKey(job, i)) and
 * written into the animation file at once, so the worker holds a batch of frames' pixels at most. A
 * retried job (its worker died) reads the frames an earlier attempt stored back into the file and goes
 * on from the first missing one: feedback frames from the last stored frame, travel frames from their
 * own noise, the same pixels either way (the seeds are fixed at submission).
 */
async function animation(ctx: JobContext<'animation'>): Promise<JobResult> {
  const engine = generationEngine(ctx);
  const { params, jobId, engineId } = ctx.payload;
  const problem = checkEngineSize(engine.info, params.width, params.height);
  if (problem) throw new JobFailure('invalid_height_or_width', problem);
  const spec = params.animation;
  const { width, height } = params;
  const encoder = animationEncoder({ format: spec.format, width, height, fps: spec.fps, loop: spec.loop, ffmpegPath: ctx.ffmpegPath });
  // the safety checker's verdict per frame; a stored frame carries its own (a resumed job reads it back)
  const filtered = new Set<number>();
  const frameArtifact = (index: number): StoredArtifact => ({ key: artifactKey(jobId, index, 'png'), seed: frameSeed(spec.keyframes, index), finish_reason: filtered.has(index) ? 'CONTENT_FILTERED' : 'SUCCESS', content_type: CONTENT_TYPES.png, width, height });
  try {
    let done = 0;
    let lastFrame: Buffer | undefined;
    for (; done < spec.frames; done++) {
      try {
        lastFrame = await ctx.storage.get(artifactKey(jobId, done, 'png'));
      } catch (err) {
        if (err instanceof StorageNotFoundError) break;
        throw new Error(`storage: could not read ${artifactKey(jobId, done, 'png')}: ${(err as Error).message}`, { cause: err });
      }
      if (readPngText(lastFrame)[FILTERED_TEXT] === 'CONTENT_FILTERED') filtered.add(done);
      await encoder.add(lastFrame);
    }
    if (done) ctx.log.info({ frames_stored: done, frames: spec.frames }, 'animation resumed from its stored frames');
    const { stylePreset: _applied, loras, embeddings, animation: _spec, prompts: _first, seed: _seed, samples: _one, outputFormat: _png, ...shared } = params;
    const made = await withAdapters(ctx, params, (pipeline) =>
      animate(pipeline ?? engine.pipeline, {
        ...shared,
        keyframes: spec.keyframes,
        frames: spec.frames,
        interpolation: spec.interpolation,
        mode: spec.mode,
        strength: spec.strength,
        done,
        lastFrame,
        engineId,
        signal: ctx.signal,
        onProgress: (p) => ctx.progress(p.step, p.steps, { done: p.framesDone, total: p.frames }),
        onFrame: async (index, image) => {
          const key = artifactKey(jobId, index, 'png');
          if (image.finishReason === 'CONTENT_FILTERED') filtered.add(index);
          const png = image.finishReason === 'CONTENT_FILTERED' ? insertPngText(image.data, FILTERED_TEXT, 'CONTENT_FILTERED') : image.data;
          try {
            await ctx.storage.put(key, png, CONTENT_TYPES.png);
          } catch (err) {
            // the frames stored before it stay: a retry goes on from them
            throw new Error(`storage: could not write ${key}: ${(err as Error).message}`, { cause: err });
          }
          await encoder.add(image.data);
        },
      }),
    );
    const file = await encoder.finish();
    const key = animationKey(jobId, spec.format);
    try {
      await ctx.storage.put(key, file, ANIMATION_CONTENT_TYPES[spec.format]);
    } catch (err) {
      throw new Error(`storage: could not write ${key}: ${(err as Error).message}`, { cause: err });
    }
    ctx.log.info({ frames: spec.frames, made: made.frames, resumed_from: done, ms: Math.round(made.totalMs), onnx_ms: Math.round(made.onnxMs), bytes: file.length, format: spec.format }, 'animated');
    // the file's own finish reason stays SUCCESS: its frames say which were filtered (and only they are refunded)
    const animationArtifact: StoredArtifact = { key, seed: spec.keyframes[0].seed, finish_reason: 'SUCCESS', content_type: ANIMATION_CONTENT_TYPES[spec.format], width, height };
    return { artifacts: [animationArtifact, ...Array.from({ length: spec.frames }, (_, i) => frameArtifact(i))] };
  } finally {
    await encoder.abort();
  }
}

/** Every job name's handler; the type makes a missing one a compile error, startWorker a start-up one. */
export const HANDLERS: JobHandlers = {
  'text-to-image': (ctx) => generate(ctx),
  'image-to-image': async (ctx) => generate(ctx, await input(ctx, ctx.payload.inputs.initImage)),
  masking: async (ctx) => {
    const { initImage, maskImage } = ctx.payload.inputs;
    return generate(ctx, await input(ctx, initImage), maskImage ? await input(ctx, maskImage) : undefined);
  },
  enhance: async (ctx) => {
    const { pipeline: base, info } = generationEngine(ctx);
    const { params, engineId } = ctx.payload;
    const tile = { width: info.nativeWidth, height: info.nativeHeight };
    const problem = checkEngineSize(info, tile.width, tile.height);
    if (problem) throw new JobFailure('invalid_height_or_width', problem);
    const image = await input(ctx, ctx.payload.inputs.image);
    const out = await withAdapters(ctx, params, (pipeline) => tiledEnhance(pipeline ?? base, {
      image,
      width: params.width,
      height: params.height,
      tileWidth: tile.width,
      tileHeight: tile.height,
      prompts: params.prompts,
      imageStrength: params.imageStrength ?? 0.7,
      steps: params.steps,
      cfgScale: params.cfgScale,
      sampler: params.sampler,
      seed: params.seed,
      outputFormat: params.outputFormat,
      engineId,
      safety: params.safety,
      onProgress: onProgress(ctx),
      signal: ctx.signal,
    }));
    return store(ctx, [out]);
  },
  animation,
  upscale: async (ctx) => {
    if (!('upscaler' in ctx.engine)) throw new JobFailure('bad_request', `engine ${ctx.engine.info.id} is not an upscale engine`);
    const image = await input(ctx, ctx.payload.inputs.image);
    const { width, height, outputFormat, safety } = ctx.payload.params;
    const out = await ctx.engine.upscaler.upscale({ image, width, height, outputFormat, safety, onProgress: onProgress(ctx), signal: ctx.signal });
    return store(ctx, [out]);
  },
};

/**
 * What a pipeline error means for the job: input errors and cancellation fail at once with their
 * catalogue name; everything else (provider trouble, runtime faults) is left to retry.
 */
export function classifyError(err: unknown): JobFailure | undefined {
  if (err instanceof JobFailure) return err;
  if (err instanceof PipelineError && err.code === 'canceled') return new JobFailure('canceled', 'the job was canceled');
  if (isInputError(err)) return new JobFailure(errorNameForPipelineCode(err.code), err.message);
  return undefined;
}
