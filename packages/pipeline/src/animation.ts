/**
 * Animations from a still pipeline: frames between keyframes, each frame's conditioning interpolated
 * between its two keyframes' (linear, as A1111's prompt travel does, or slerp) and its starting noise
 * slerped between their seeds' (diffusers' "walk" example), so the same seed on both sides keeps the
 * noise fixed. `travel` frames are independent and go through the denoiser in batches; `feedback`
 * frames are each an image-to-image of the one before (Deforum's way), one at a time. Frames are handed
 * to the caller as they finish (PNG, with their parameters), so nothing holds more than a batch of raw
 * pixels; the caller writes the file (animation-encoders.ts).
 */
import type { DiffusionPipeline } from './pipeline';
import { PipelineError } from './errors';
import { NormalRng } from './rng';
import type { Conditioning, GenerateRequest, GeneratedImage, WeightedPrompt } from './types';

export interface Keyframe {
  frame: number;
  prompts: WeightedPrompt[];
  /** A concrete seed (>= 1): a resumed animation must draw the same noise. */
  seed: number;
}

export type Interpolation = 'linear' | 'slerp';
export type AnimationMode = 'travel' | 'feedback';

export interface AnimationProgress {
  /** Steps done across all frames, of `steps` (frames x steps per frame). */
  step: number;
  steps: number;
  framesDone: number;
  frames: number;
}

export interface AnimateRequest extends Omit<GenerateRequest, 'prompts' | 'seed' | 'samples' | 'initImage' | 'maskImage' | 'maskSource' | 'imageStrength' | 'onProgress' | 'conditioning' | 'latentNoise'> {
  keyframes: Keyframe[];
  frames: number;
  interpolation: Interpolation;
  mode: AnimationMode;
  /** feedback: the part of the previous frame kept (image_strength). */
  strength: number;
  /** Frames made already (a resumed job): generation starts at this frame. */
  done?: number;
  /** feedback, resumed: the last frame made (PNG), which the next one starts from. */
  lastFrame?: Buffer;
  /** travel: frames per denoising batch (default 4; the memory bound may split one further). */
  batch?: number;
  /** Called with each frame in order, once it is made; the next batch waits for it. */
  onFrame(index: number, image: GeneratedImage): Promise<void>;
  onProgress?(p: AnimationProgress): void;
}

/** Checks keyframes as the pipeline needs them (the API refuses the same mistakes with their own errors). */
export function checkKeyframes(keyframes: Keyframe[], frames: number): void {
  if (!Number.isInteger(frames) || frames < 1) throw new PipelineError('invalid_keyframes', `frames must be a positive integer (got ${frames})`);
  if (!keyframes.length) throw new PipelineError('invalid_keyframes', 'an animation needs at least one keyframe');
  if (keyframes[0].frame !== 0) throw new PipelineError('invalid_keyframes', `the first keyframe must be at frame 0 (got ${keyframes[0].frame})`);
  for (const [i, k] of keyframes.entries()) {
    if (!Number.isInteger(k.frame) || k.frame >= frames) throw new PipelineError('invalid_keyframes', `keyframes[${i}].frame must be an integer below frames (${frames}); got ${k.frame}`);
    if (i > 0 && k.frame <= keyframes[i - 1].frame) throw new PipelineError('invalid_keyframes', `keyframes must be in strictly increasing frame order (keyframes[${i}] at ${k.frame} after ${keyframes[i - 1].frame})`);
    if (!Number.isInteger(k.seed) || k.seed < 1) throw new PipelineError('invalid_seed', `keyframes[${i}].seed must be a concrete seed of at least 1 (got ${k.seed})`);
  }
}

/** The keyframes a frame lies between and how far along (t in [0, 1)); after the last keyframe it holds. */
export function frameSpan(keyframes: Keyframe[], frame: number): { from: Keyframe; to: Keyframe; t: number } {
  let i = 0;
  while (i + 1 < keyframes.length && keyframes[i + 1].frame <= frame) i++;
  const from = keyframes[i];
  const to = keyframes[i + 1] ?? from;
  const t = to === from ? 0 : (frame - from.frame) / (to.frame - from.frame);
  return { from, to, t };
}

/** The seed a frame is said to have (its artifact's): its first keyframe's. */
export function frameSeed(keyframes: Keyframe[], frame: number): number {
  return frameSpan(keyframes, frame).from.seed;
}

/** Past this cosine two vectors are treated as parallel and interpolated linearly (diffusers' walk uses 0.9995). */
const DOT_THRESHOLD = 0.9995;

export function lerp(t: number, a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (1 - t) * a[i] + t * b[i];
  return out;
}

/** Spherical interpolation over the whole vectors: keeps the norm of Gaussian noise, where lerp shrinks it mid-way. */
export function slerp(t: number, a: Float32Array, b: Float32Array): Float32Array {
  if (t === 0) return a.slice();
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const cos = na && nb ? dot / Math.sqrt(na * nb) : 1;
  if (Math.abs(cos) > DOT_THRESHOLD) return lerp(t, a, b);
  const theta = Math.acos(cos);
  const sin = Math.sin(theta);
  const s0 = Math.sin((1 - t) * theta) / sin;
  const s1 = Math.sin(t * theta) / sin;
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = s0 * a[i] + s1 * b[i];
  return out;
}

function mix(how: Interpolation, t: number, a: Float32Array, b: Float32Array): Float32Array {
  if (a === b || t === 0) return a;
  return how === 'slerp' ? slerp(t, a, b) : lerp(t, a, b);
}

/**
 * Makes the frames of an animation, from `done` on. Throws PipelineError('canceled') when the signal
 * aborts (between steps); frames already handed to onFrame stay the caller's.
 */
export async function animate(pipeline: DiffusionPipeline, req: AnimateRequest): Promise<{ frames: number; onnxMs: number; totalMs: number }> {
  const started = performance.now();
  const onnxBefore = pipeline.model.clock.ms;
  const { keyframes, frames, interpolation, mode, strength, onFrame, onProgress, done = 0, lastFrame, batch = 4, ...shared } = req;
  checkKeyframes(keyframes, frames);
  if (!Number.isInteger(done) || done < 0 || done > frames) throw new PipelineError('invalid_keyframes', `done must be from 0 to frames (got ${done})`);
  if (mode === 'feedback' && done > 0 && !lastFrame) throw new Error('a resumed feedback animation needs its last frame');
  if (!(strength >= 0 && strength <= 1)) throw new PipelineError('invalid_image_strength', `strength must be from 0 to 1 (got ${strength})`);
  if (mode === 'feedback' && !pipeline.supportsImageToImage) throw new PipelineError('unsupported_mode', `engine ${pipeline.engineId} has no vae_encoder, so it cannot make feedback animations`);
  // every frame shares these (and checks them once here): size, steps, guidance, sampler
  const r = pipeline.checkInputs({ ...shared, prompts: keyframes[0].prompts, seed: keyframes[0].seed });
  const latentSize = pipeline.model.latentChannels * pipeline.latentCells(r.width, r.height);

  // each keyframe's conditioning and noise, made once
  const encoded = new Map<Keyframe, Promise<{ conditioning: Conditioning; noise: Float32Array }>>();
  const ofKeyframe = (k: Keyframe) => {
    let made = encoded.get(k);
    if (!made) {
      made = pipeline.conditioning({ ...shared, prompts: k.prompts, seed: k.seed }).then((conditioning) => ({ conditioning, noise: new NormalRng(k.seed).randn(latentSize) }));
      encoded.set(k, made);
    }
    return made;
  };
  const frameInputs = async (frame: number): Promise<Pick<GenerateRequest, 'prompts' | 'seed' | 'conditioning' | 'latentNoise'>> => {
    const { from, to, t } = frameSpan(keyframes, frame);
    const a = await ofKeyframe(from);
    const b = await ofKeyframe(to);
    const conditioning: Conditioning = {
      truncatedTokens: Math.max(a.conditioning.truncatedTokens, b.conditioning.truncatedTokens),
      inputs: a.conditioning.inputs.map((input, i) => {
        const other = b.conditioning.inputs[i];
        return { ...input, cond: mix(interpolation, t, input.cond, other.cond), uncond: input.uncond && other.uncond ? mix(interpolation, t, input.uncond, other.uncond) : input.uncond };
      }),
    };
    return { prompts: (t < 0.5 ? from : to).prompts, seed: from.seed, conditioning, latentNoise: mix('slerp', t, a.noise, b.noise) };
  };

  // progress in steps of the frames' own schedules, counted as `steps` per frame
  const perFrame = r.steps;
  let framesDone = done;
  const report = (running: number, p: { step: number; total: number }) => {
    const within = Math.round((p.step / p.total) * perFrame);
    onProgress?.({ step: framesDone * perFrame + running * within, steps: frames * perFrame, framesDone, frames });
  };
  const common = { ...shared, width: r.width, height: r.height, steps: r.steps, cfgScale: r.cfgScale, samples: 1, outputFormat: 'png' as const };

  if (mode === 'travel') {
    for (let first = done; first < frames; first += batch) {
      const indices = Array.from({ length: Math.min(batch, frames - first) }, (_, i) => first + i);
      const reqs: GenerateRequest[] = [];
      for (const [j, frame] of indices.entries()) {
        // one report per step for the batch: its first frame's
        reqs.push({ ...common, ...(await frameInputs(frame)), onProgress: j === 0 ? (p) => report(indices.length, p) : undefined });
      }
      const settled = await pipeline.generateBatch(reqs);
      for (const [j, s] of settled.entries()) {
        if (s.status === 'rejected') throw s.reason;
        await onFrame(indices[j], s.value.images[0]);
        framesDone++;
      }
      onProgress?.({ step: framesDone * perFrame, steps: frames * perFrame, framesDone, frames });
    }
  } else {
    let previous = lastFrame;
    for (let frame = done; frame < frames; frame++) {
      const inputs = await frameInputs(frame);
      const call: GenerateRequest = previous ? { ...common, ...inputs, initImage: previous, imageStrength: strength } : { ...common, ...inputs };
      const result = await pipeline.generate({ ...call, onProgress: (p) => report(1, p) });
      const image = result.images[0];
      await onFrame(frame, image);
      previous = image.data;
      framesDone++;
      onProgress?.({ step: framesDone * perFrame, steps: frames * perFrame, framesDone, frames });
    }
  }
  return { frames: frames - done, onnxMs: pipeline.model.clock.ms - onnxBefore, totalMs: performance.now() - started };
}
