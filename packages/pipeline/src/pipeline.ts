/**
 * What every diffusion family shares, as diffusers keeps it in its pipeline utilities: input checks,
 * seeds and noise, the denoising loop (guidance, progress, cancellation, the masking blend), VAE encode
 * and decode, image decoding, masks, compositing, output encoding and the PNG parameters. A family
 * (families/*.ts) supplies its prompt encoding (the UNet's conditioning inputs) and its samplers.
 */
import type { FeedValue, OnnxModel } from './backends/onnx';
import { DEFAULTS } from './defaults';
import { describeEngine, type GenerationEngineInfo } from './engines';
import { PipelineError } from './errors';
import type { FamilyDescription } from './families/catalog';
import { CONTENT_TYPES, decodeImage, decodeMask, encodeImage, imageSize, type PlanarImage } from './image';
import type { DiffusionModel, TextEncoderPair } from './model';
import { a1111SamplerName } from './infotext';
import { imageBytes, type MemoryPlan, memoryRefusal } from './memory';
import { BatchRng, NormalRng, resolveSeed, sampleSeed, MAX_SEED } from './rng';
import { applySafety, type SafetyChecker, type SafetyMode } from './safety';
import { createScheduler, type Scheduler } from './schedulers';
import { InvalidSamplerError, schedulerConfigForSampler } from './schedulers/samplers';
import type { Conditioning, ConditioningInput, GenerateRequest, GenerateResult, GeneratedImage, OutputFormat, WeightedPrompt } from './types';

export type { Conditioning, ConditioningInput };

export { DEFAULTS };
const LIMITS = { maxSteps: 1000, maxSamples: 64, maxCfgScale: 100 };

/** A request after checkInputs: every default filled in, every value known good. */
export interface CheckedRequest {
  positive: WeightedPrompt[];
  negative: WeightedPrompt[];
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  samples: number;
  seed: number;
  schedulerConfig: Record<string, unknown>;
  samplerName: string;
  imageStrength: number;
  outputFormat: OutputFormat;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

/** The texts of a request's prompts, each once: positives, then (with guidance) negatives or "". */
export function promptTexts(r: CheckedRequest, withUncond: boolean): { texts: string[]; negatives: WeightedPrompt[] } {
  const negatives = r.negative.length ? r.negative : [{ text: '', weight: -1 }];
  return { texts: [...new Set([...r.positive.map((p) => p.text), ...(withUncond ? negatives.map((p) => p.text) : [])])], negatives };
}

/**
 * Runs one text encoder over texts (one batch) and returns the named outputs, a row per text, with the
 * tokens each text lost to the window.
 */
export async function runTextEncoder(pair: TextEncoderPair, texts: string[], outputs: string[]) {
  const encoded = texts.map((t) => pair.tokenizer.encode(t));
  const ids = pair.encoder.inputs[0];
  const out = await pair.encoder.run({ [ids.name]: { data: encoded.flatMap((e) => e.ids), dims: [texts.length, pair.tokenizer.maxLength] } }, outputs);
  return {
    rows: outputs.map((name) => ({ data: out[name].data, dims: out[name].dims, rowSize: out[name].data.length / texts.length })),
    truncated: encoded.map((e) => e.truncatedTokens),
  };
}

/** The weight-normalised blend of the rows of prompts' texts: Stability's multi-prompt weighting. */
export function blendRows(data: Float32Array, rowSize: number, texts: string[], prompts: WeightedPrompt[]): Float32Array {
  const row = new Float32Array(rowSize);
  const total = prompts.reduce((s, p) => s + Math.abs(p.weight ?? 1), 0);
  for (const p of prompts) {
    const w = Math.abs(p.weight ?? 1) / total;
    const offset = texts.indexOf(p.text) * rowSize;
    for (let i = 0; i < rowSize; i++) row[i] += w * data[offset + i];
  }
  return row;
}

/** The name of a graph's penultimate hidden state (`hidden_states.{n-2}` of the n exported), as SDXL and SD3 condition on it. */
export function penultimateHiddenState(encoder: OnnxModel, what: string): string {
  const layers = encoder.outputs.map((o) => /^hidden_states\.(\d+)$/.exec(o.name)?.[1]).filter((n): n is string => n !== undefined).map(Number);
  if (layers.length < 2) throw new PipelineError('invalid_model', `${what} exports no hidden_states.N outputs (needs them for the penultimate layer)`);
  return `hidden_states.${Math.max(...layers) - 1}`;
}

type Member = { index: number; req: GenerateRequest; r: CheckedRequest; offset: number; seeds: number[] };

/** Text-to-image, image-to-image and masking for a diffusion family in the diffusers ONNX layout. */
export abstract class DiffusionPipeline {
  /** The engine's memory model and the worker's bound; unset = no bound (a library caller's own business). */
  memory: MemoryPlan | undefined;
  /** The safety checker every image goes through (safety.ts); unset = none (the engine ships none). */
  safety: SafetyChecker | undefined;

  protected constructor(
    readonly model: DiffusionModel,
    readonly engineId: string,
    readonly family: FamilyDescription,
  ) {}

  /**
   * The same pipeline over other graphs of the same folder (LoRAs merged into its text encoders and
   * denoiser: lora-pipeline.ts). Everything else, the memory plan included, is this one's.
   */
  withModel(model: DiffusionModel): this {
    const copy = Object.assign(Object.create(Object.getPrototypeOf(this) as object) as this, this);
    (copy as { model: DiffusionModel }).model = model;
    return copy;
  }

  /** The family's prompt encoding: the UNet's conditioning inputs for this request. */
  protected abstract encodePrompts(r: CheckedRequest, req: GenerateRequest, guidance: boolean): Promise<Conditioning>;

  /** The engine's description, read from its folder's JSON as the API reads it: family, sizes, samplers, modes. */
  describe(): GenerationEngineInfo {
    return describeEngine(this.model.dir, this.engineId) as GenerationEngineInfo;
  }

  /**
   * Where image-to-image starts, as the family's diffusers pipeline computes it (get_timesteps): SD's
   * init_timestep = int(steps * strength), starting at steps - init_timestep.
   */
  protected startStep(steps: number, strength: number): number {
    const initTimestep = Math.min(Math.floor(steps * strength), steps);
    return Math.max(steps - initTimestep, 0);
  }

  /** The UNet's conditioning inputs for a request, as generate() feeds them (for tests and debugging). */
  async conditioning(req: GenerateRequest): Promise<Conditioning> {
    const r = this.checkInputs(req);
    return this.encodePrompts(r, req, r.cfgScale > 1);
  }

  get nativeWidth(): number {
    return this.model.nativeWidth;
  }

  get nativeHeight(): number {
    return this.model.nativeHeight;
  }

  get supportsImageToImage(): boolean {
    return this.model.vaeEncoder !== undefined;
  }

  async dispose(): Promise<void> {
    const m = this.model;
    await Promise.all([...m.encoders.map((e) => e.encoder), m.unet, m.vaeDecoder, m.vaeEncoder].map((s) => s?.dispose()));
  }

  /** Validates a request and fills in defaults; every message names the bad value and what was expected. */
  checkInputs(req: GenerateRequest, initSize?: { width: number; height: number }): CheckedRequest {
    // LoRAs are merged into a pipeline of their own (withLoras), never applied per call: refused, not ignored
    if (req.loras?.length) throw new PipelineError('invalid_lora', 'this pipeline has no LoRAs merged: build one with withLoras (the worker does) and call it without `loras`');
    if (!Array.isArray(req.prompts) || req.prompts.length === 0) {
      throw new PipelineError('invalid_prompts', 'prompts must be a non-empty list of {text, weight}');
    }
    for (const [i, p] of req.prompts.entries()) {
      if (typeof p?.text !== 'string') throw new PipelineError('invalid_prompts', `prompts[${i}].text must be a string`);
      if (p.weight !== undefined && !Number.isFinite(p.weight)) {
        throw new PipelineError('invalid_prompts', `prompts[${i}].weight must be a finite number (got ${p.weight})`);
      }
    }
    const positive = req.prompts.filter((p) => (p.weight ?? 1) > 0);
    const negative = req.prompts.filter((p) => (p.weight ?? 1) < 0);
    if (positive.length === 0) throw new PipelineError('invalid_prompts', 'at least one prompt must have a positive weight');

    const { vaeScaleFactor, unetMultiple } = this.model;
    const multiple = vaeScaleFactor * unetMultiple;
    const width = req.width ?? initSize?.width ?? this.model.nativeWidth;
    const height = req.height ?? initSize?.height ?? this.model.nativeHeight;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (!isInt(v) || v <= 0) throw new PipelineError('invalid_height_or_width', `${name} must be a positive integer (got ${v})`);
      if (v % vaeScaleFactor !== 0) throw new PipelineError('invalid_height_or_width', `${name} must be a multiple of ${vaeScaleFactor} (got ${v})`);
      if (v % multiple !== 0) {
        throw new PipelineError('invalid_height_or_width', `${name} must be a multiple of ${multiple} for this engine (got ${v})`);
      }
    }
    const steps = req.steps ?? this.family.defaults?.steps ?? DEFAULTS.steps;
    if (!isInt(steps) || steps < 1 || steps > LIMITS.maxSteps) {
      throw new PipelineError('invalid_steps', `steps must be an integer from 1 to ${LIMITS.maxSteps} (got ${steps})`);
    }
    const cfgScale = req.cfgScale ?? this.family.defaults?.cfgScale ?? DEFAULTS.cfgScale;
    if (typeof cfgScale !== 'number' || !Number.isFinite(cfgScale) || cfgScale < 0 || cfgScale > LIMITS.maxCfgScale) {
      throw new PipelineError('invalid_cfg_scale', `cfg_scale must be a number from 0 to ${LIMITS.maxCfgScale} (got ${cfgScale})`);
    }
    const samples = req.samples ?? DEFAULTS.samples;
    if (!isInt(samples) || samples < 1 || samples > LIMITS.maxSamples) {
      throw new PipelineError('invalid_samples', `samples must be an integer from 1 to ${LIMITS.maxSamples} (got ${samples})`);
    }
    if (req.seed !== undefined && (!isInt(req.seed) || req.seed < 0 || req.seed > MAX_SEED)) {
      throw new PipelineError('invalid_seed', `seed must be an integer from 0 to ${MAX_SEED} (got ${req.seed})`);
    }
    const imageStrength = req.imageStrength ?? DEFAULTS.imageStrength;
    if (typeof imageStrength !== 'number' || !(imageStrength >= 0 && imageStrength <= 1)) {
      throw new PipelineError('invalid_image_strength', `image_strength must be a number from 0 to 1 (got ${imageStrength})`);
    }
    const outputFormat = req.outputFormat ?? DEFAULTS.outputFormat;
    if (!(outputFormat in CONTENT_TYPES)) {
      throw new PipelineError('invalid_output_format', `output format must be png, jpeg or webp (got ${outputFormat})`);
    }
    if (req.initLatents && (req.initImage || req.maskImage || req.maskSource)) throw new PipelineError('invalid_image', 'give initLatents or an init image, not both');
    if ((req.initImage || req.maskImage || req.maskSource) && !this.model.vaeEncoder) {
      throw new PipelineError('unsupported_mode', `engine ${this.engineId} has no vae_encoder, so it cannot do image-to-image or masking`);
    }
    if ((req.maskImage || req.maskSource) && !req.initImage) {
      throw new PipelineError('invalid_mask_image', 'masking needs an init image');
    }
    if (req.maskImage && !req.maskSource) throw new PipelineError('invalid_mask_image', 'mask_source is required with a mask image');
    if (req.maskSource && req.maskSource !== 'INIT_IMAGE_ALPHA' && !req.maskImage) {
      throw new PipelineError('invalid_mask_image', `mask_source ${req.maskSource} needs a mask image`);
    }
    if (req.sampler !== undefined && !(this.family.samplers as readonly string[]).includes(req.sampler)) {
      throw new PipelineError('invalid_sampler', `sampler ${req.sampler} cannot be used with ${this.family.name} engines; valid samplers: ${this.family.samplers.join(', ')}`);
    }
    let schedulerConfig: Record<string, unknown>;
    try {
      schedulerConfig = schedulerConfigForSampler(this.model.schedulerConfig, req.sampler);
    } catch (err) {
      if (err instanceof InvalidSamplerError) throw new PipelineError('invalid_sampler', err.message);
      throw err;
    }
    return {
      positive,
      negative,
      width,
      height,
      steps,
      cfgScale,
      samples,
      seed: resolveSeed(req.seed),
      schedulerConfig,
      samplerName: req.sampler ?? String(this.model.schedulerConfig._class_name),
      imageStrength,
      outputFormat,
    };
  }

  /** Feeds for the UNet's timestep input: float or int64, scalar, [1] or [batch], as its metadata says. */
  private timestepFeed(t: number, batch: number): FeedValue {
    const info = this.model.unet.input('timestep') ?? this.model.unet.inputs[1];
    const shape = info.shape;
    if (shape.length === 0) return { data: [t], dims: [] };
    const first = shape[0];
    const perRow = first === batch || (typeof first === 'string' && /batch/i.test(first));
    return perRow ? { data: new Array(batch).fill(t), dims: [batch] } : { data: [t], dims: [1] };
  }

  private async encodeInitImage(image: PlanarImage, samples: number): Promise<Float32Array> {
    const encoder = this.model.vaeEncoder as OnnxModel;
    const pixels = new Float32Array(image.data.length);
    for (let i = 0; i < pixels.length; i++) pixels[i] = image.data[i] * 2 - 1;
    const out = await encoder.run({ [encoder.inputs[0].name]: { data: pixels, dims: [1, 3, image.height, image.width] } });
    const latent = out.latent_sample ?? out.latent_parameters ?? Object.values(out)[0];
    // latent_parameters holds mean and log-variance; the mean (the first channels) is the deterministic encoding.
    const plane = (image.height / this.model.vaeScaleFactor) * (image.width / this.model.vaeScaleFactor);
    const size = this.model.latentChannels * plane;
    const { scalingFactor, shiftFactor } = this.model;
    const one = new Float32Array(size);
    for (let i = 0; i < size; i++) one[i] = (latent.data[i] - shiftFactor) * scalingFactor;
    const batch = new Float32Array(size * samples);
    for (let s = 0; s < samples; s++) batch.set(one, s * size);
    return batch;
  }

  private async decodeLatents(latents: Float32Array, samples: number, h: number, w: number): Promise<PlanarImage[]> {
    const decoder = this.model.vaeDecoder;
    const input = decoder.inputs[0];
    const scaled = new Float32Array(latents.length);
    const { scalingFactor, shiftFactor, latentChannels: c } = this.model;
    for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / scalingFactor + shiftFactor;
    const per = latents.length / samples;
    const height = h * this.model.vaeScaleFactor;
    const width = w * this.model.vaeScaleFactor;
    const toImage = (data: Float32Array, offset: number): PlanarImage => {
      const img = new Float32Array(3 * height * width);
      for (let i = 0; i < img.length; i++) img[i] = data[offset + i] / 2 + 0.5;
      return { data: img, width, height };
    };
    // Graphs exported with a fixed batch of 1 are decoded one image at a time.
    if (typeof input.shape[0] === 'number' && input.shape[0] === 1 && samples > 1) {
      const images: PlanarImage[] = [];
      for (let s = 0; s < samples; s++) {
        const out = await decoder.run({ [input.name]: { data: scaled.subarray(s * per, (s + 1) * per), dims: [1, c, h, w] } });
        images.push(toImage(Object.values(out)[0].data, 0));
      }
      return images;
    }
    const out = await decoder.run({ [input.name]: { data: scaled, dims: [samples, c, h, w] } });
    const data = Object.values(out)[0].data;
    return Array.from({ length: samples }, (_, s) => toImage(data, s * 3 * height * width));
  }

  /** Latent cells of a width x height image. */
  latentCells(width: number, height: number): number {
    return (width / this.model.vaeScaleFactor) * (height / this.model.vaeScaleFactor);
  }

  /** Images of this size one run may denoise within the memory bound (Infinity without one; 0 = not even one). */
  imagesPerRun(width: number, height: number): number {
    if (!this.memory) return Number.POSITIVE_INFINITY;
    return Math.floor(this.memory.gate.capacity / imageBytes(this.memory.model, this.latentCells(width, height)));
  }

  /** Why one image of this size cannot run within the memory bound, or undefined when it can. */
  memoryProblem(width: number, height: number): string | undefined {
    if (!this.memory || this.imagesPerRun(width, height) >= 1) return undefined;
    const { needMb, budgetMb, largestSquare } = memoryRefusal(this.memory.model, this.memory.gate.capacity, this.latentCells(width, height), this.model.vaeScaleFactor ** 2);
    return `${width}x${height}: one image needs about ${needMb} MB on this worker, over its memory bound of ${budgetMb} MB for runs (WORKER_MEMORY_LIMIT_MB); ${largestSquare}`;
  }

  async generate(req: GenerateRequest): Promise<GenerateResult> {
    const [result] = await this.generateBatch([req]);
    if (result.status === 'rejected') throw result.reason;
    return result.value;
  }

  /**
   * What requests must share to be denoised as one batch (size, steps, guidance scale, scheduler), and
   * how many images one adds; undefined for a request that runs alone (image-to-image, masking, or
   * input that fails its checks, which then fails on its own).
   */
  batchKey(req: GenerateRequest): { key: string; images: number; fit: number } | undefined {
    if (req.initImage || req.initLatents || req.maskImage || req.maskSource) return undefined;
    let r: CheckedRequest;
    try {
      r = this.checkInputs(req);
    } catch {
      return undefined;
    }
    return { key: JSON.stringify([r.width, r.height, r.steps, r.cfgScale, r.schedulerConfig]), images: r.samples, fit: this.imagesPerRun(r.width, r.height) };
  }

  /**
   * Several text-to-image requests with one batchKey, denoised as one batch: each request's rows are
   * its own (prompts, seeds, noise), so its images are byte for byte those it gets alone. Each request
   * settles on its own: a canceled one is rejected at the next step (its rows run on to the batch's end,
   * as the scheduler's state spans the whole batch), a bad one fails alone. One request may be anything
   * generate() takes.
   */
  async generateBatch(reqs: GenerateRequest[]): Promise<PromiseSettledResult<GenerateResult>[]> {
    const started = performance.now();
    const onnxBefore = this.model.clock.ms;
    const settled: PromiseSettledResult<GenerateResult>[] = new Array(reqs.length);
    const fail = (i: number, reason: unknown) => (settled[i] = { status: 'rejected', reason });
    // checked one by one: a request that fails its checks fails alone
    const members: Member[] = [];
    let samples = 0;
    for (const [index, req] of reqs.entries()) {
      try {
        const initSize = req.initImage ? await imageSize(req.initImage, 'init_image') : undefined;
        const r = this.checkInputs(req, initSize);
        const problem = this.memoryProblem(r.width, r.height);
        if (problem) throw new PipelineError('invalid_height_or_width', problem);
        members.push({ index, req, r, offset: samples, seeds: Array.from({ length: r.samples }, (_, i) => sampleSeed(r.seed, i)) });
        samples += r.samples;
      } catch (err) {
        fail(index, err);
      }
    }
    if (!members.length) return settled;
    const keys = new Set(members.map((m) => this.batchKey(m.req)?.key));
    if (members.length > 1 && (keys.size !== 1 || keys.has(undefined))) throw new Error('generateBatch: the requests do not share one batchKey');
    // micro-batches of the images that fit the memory bound, in order (as A1111 runs n_iter batches of
    // batch_size); each image keeps its own seed and noise, so the bytes do not depend on the split
    const { width, height } = members[0].r;
    const runs = splitRuns(members, Math.min(samples, this.imagesPerRun(width, height)));
    const runsOf = new Map<Member, number>();
    for (const run of runs) for (const part of run) runsOf.set(part.member, (runsOf.get(part.member) ?? 0) + 1);
    const done = new Map<Member, number>();
    const out = new Map<Member, GeneratedImage[]>(members.map((m) => [m, []]));
    const truncated = new Map<Member, number>();
    for (const run of runs) {
      const parts = run.filter((p) => settled[p.member.index] === undefined);
      if (!parts.length) continue;
      const images = parts.reduce((n, p) => n + p.count, 0);
      const release = this.memory ? await this.memory.gate.acquire(images * imageBytes(this.memory.model, this.latentCells(width, height))) : () => {};
      let offset = 0;
      const subs: Member[] = parts.map(({ member, from, count }) => {
        const before = done.get(member) ?? 0;
        const total = runsOf.get(member)!;
        const onProgress = member.req.onProgress;
        // progress over all of the member's runs: run k of n reports steps k*total+1 .. (k+1)*total of n*total
        const req: GenerateRequest = total === 1 || !onProgress ? member.req : { ...member.req, onProgress: (p) => onProgress({ ...p, step: before * p.total + p.step, total: total * p.total }) };
        const sub = { index: member.index, req, r: { ...member.r, samples: count }, offset, seeds: member.seeds.slice(from, from + count) };
        offset += count;
        return sub;
      });
      const live = new Set(subs);
      try {
        const result = await this.denoise(subs, images, live, fail, started);
        if (result.pixelMask && result.initImage) for (const sub of live) for (let s = 0; s < sub.r.samples; s++) composite(result.decoded[sub.offset + s], result.initImage, result.pixelMask);
        // the safety checker sees the images as they will be returned (composited)
        const flags = await this.safetyFlags(subs.filter((sub) => live.has(sub)), result.decoded);
        for (const [j, sub] of subs.entries()) {
          const member = parts[j].member;
          done.set(member, (done.get(member) ?? 0) + 1);
          if (!live.has(sub)) continue;
          truncated.set(member, result.truncatedTokens[j]);
          try {
            for (let s = 0; s < sub.r.samples; s++) {
              const checked = await applySafety(result.decoded[sub.offset + s], flags[sub.offset + s] ?? false, this.safetyMode(sub.req));
              const data = await encodeImage(checked.image, sub.r.outputFormat, this.parameters(sub.r, sub.seeds[s], sub.req));
              const kept = sub.req.keepLatents && result.latents ? { latents: result.latents.slice((sub.offset + s) * (result.latents.length / images), (sub.offset + s + 1) * (result.latents.length / images)) } : {};
              out.get(member)!.push({ data, seed: sub.seeds[s], contentType: CONTENT_TYPES[sub.r.outputFormat], width: sub.r.width, height: sub.r.height, finishReason: checked.finishReason, ...kept });
            }
          } catch (err) {
            // refused by its safety mode: this request fails, the others of the batch are theirs
            live.delete(sub);
            fail(sub.index, err);
          }
        }
      } catch (err) {
        // a fault of the run (the runtime, memory) is every open request's in it
        for (const sub of live) fail(sub.index, err);
      } finally {
        release();
      }
    }
    for (const m of members) {
      if (settled[m.index] !== undefined) continue;
      settled[m.index] = {
        status: 'fulfilled',
        value: { images: out.get(m)!, truncatedTokens: truncated.get(m) ?? 0, timings: { totalMs: performance.now() - started, onnxMs: this.model.clock.ms - onnxBefore }, runs: runsOf.get(m) ?? 1 },
      };
    }
    return settled;
  }

  /**
   * The shared part of a batch: conditioning, noise, the denoising loop and the VAE decode. Requests
   * whose signal aborts are failed and dropped from `live` as the loop meets them. With one member it
   * is diffusers' pipeline call exactly, image-to-image and masking included.
   */
  private async denoise(
    members: Member[],
    samples: number,
    live: Set<(typeof members)[number]>,
    fail: (index: number, reason: unknown) => void,
    started: number,
  ): Promise<{ decoded: PlanarImage[]; latents?: Float32Array; truncatedTokens: number[]; initImage?: PlanarImage; pixelMask?: Float32Array }> {
    const first = members[0];
    const { req } = first;
    // shared by every member (their batchKey says so)
    const { width, height, steps, cfgScale, schedulerConfig } = first.r;
    const h = height / this.model.vaeScaleFactor;
    const w = width / this.model.vaeScaleFactor;
    const channels = this.model.latentChannels;
    const latentSize = channels * h * w;
    const guidance = cfgScale > 1;

    // 1. encode the prompts (conditional and, with guidance, unconditional), a row per image: [uncond rows, cond rows]
    const prompts = await Promise.all(members.map((m) => m.req.conditioning ?? this.encodePrompts(m.r, m.req, guidance)));
    if (prompts.some((p) => p.inputs.length !== prompts[0].inputs.length || p.inputs.some((input) => guidance !== (input.uncond !== undefined)))) {
      throw new Error('a request\'s conditioning was not made for this guidance (cfg_scale) or this pipeline');
    }
    const rows = guidance ? 2 * samples : samples;
    const conditioning: Record<string, FeedValue> = {};
    for (const [k, input] of prompts[0].inputs.entries()) {
      const rowSize = input.cond.length;
      const data = new Float32Array(rows * rowSize);
      for (const [j, m] of members.entries()) {
        const own = prompts[j].inputs[k];
        for (let s = m.offset; s < m.offset + m.r.samples; s++) {
          if (guidance) data.set(own.uncond!, s * rowSize);
          data.set(own.cond, (guidance ? samples + s : s) * rowSize);
        }
      }
      conditioning[input.name] = { data, dims: [rows, ...input.rowDims] };
    }

    // 2. set the timesteps; image-to-image starts part-way, at (1 - image_strength) of the schedule
    const scheduler: Scheduler = createScheduler(schedulerConfig);
    scheduler.setTimesteps(steps);
    let timesteps = scheduler.timesteps;
    const generators = members.flatMap((m) => m.seeds.map((seed) => new NormalRng(seed)));
    const rng = new BatchRng(generators);
    // each sample's noise from its own generator, as BatchRng.randn draws it, or the caller's (an animation frame's)
    const noise = new Float32Array(samples * latentSize);
    for (const m of members) {
      const given = m.req.latentNoise;
      if (given && given.length !== m.r.samples * latentSize) throw new Error(`latentNoise has ${given.length} values, expected ${m.r.samples * latentSize}`);
      for (let s = 0; s < m.r.samples; s++) {
        const row = m.offset + s;
        noise.set(given ? given.subarray(s * latentSize, (s + 1) * latentSize) : generators[row].randn(latentSize), row * latentSize);
      }
    }

    // 3. prepare the latents: pure noise, or the init image's latents noised to the first timestep
    let latents: Float32Array;
    let initLatents: Float32Array | undefined;
    let initImage: PlanarImage | undefined;
    let pixelMask: Float32Array | undefined;
    let latentMask: Float32Array | undefined;
    if (req.initImage || req.initLatents) {
      if (req.initLatents) {
        if (req.initLatents.length !== latentSize) throw new Error(`initLatents has ${req.initLatents.length} values, expected ${latentSize} (${channels}x${h}x${w})`);
        initLatents = new Float32Array(latentSize * samples);
        for (let s = 0; s < samples; s++) initLatents.set(req.initLatents, s * latentSize);
      } else {
        initImage = await decodeImage(req.initImage!, width, height, 'init_image');
        initLatents = await this.encodeInitImage(initImage, samples);
      }
      if (req.maskSource) {
        pixelMask = await decodeMask(req.maskSource === 'INIT_IMAGE_ALPHA' ? req.initImage! : req.maskImage!, width, height, req.maskSource);
        latentMask = downsampleMask(pixelMask, width, height, this.model.vaeScaleFactor);
      }
      // Masking repaints fully unless the caller asks to keep some of the original inside the mask.
      const strength = req.maskSource && req.imageStrength === undefined ? 1 : 1 - first.r.imageStrength;
      const tStart = this.startStep(steps, strength) * scheduler.order;
      timesteps = timesteps.slice(tStart);
      scheduler.setBeginIndex(tStart);
      latents = timesteps.length ? scheduler.addNoise(initLatents, noise, timesteps[0]) : initLatents.slice();
    } else {
      latents = new Float32Array(noise.length);
      for (let i = 0; i < noise.length; i++) latents[i] = noise[i] * scheduler.initNoiseSigma;
    }

    // a member whose signal has aborted leaves the batch (its rows still run: the scheduler spans them)
    const dropCanceled = (when: string) => {
      for (const m of live) {
        if (m.req.signal?.aborted) {
          live.delete(m);
          fail(m.index, new PipelineError('canceled', `generation canceled ${when}`));
        }
      }
    };

    // 4. the denoising loop
    const unet = this.model.unet;
    const sampleName = unet.input('sample') ? 'sample' : unet.inputs[0].name;
    const timestepName = unet.input('timestep') ? 'timestep' : unet.inputs[1].name;
    const outName = unet.outputs[0].name;
    const total = timesteps.length;
    for (let i = 0; i < total; i++) {
      dropCanceled(`before step ${i + 1} of ${total}`);
      if (!live.size) return { decoded: [], truncatedTokens: [] };
      const t = timesteps[i];
      // expand the latents for guidance: [uncond rows, cond rows]
      const expanded = guidance ? concat(latents, latents) : latents;
      // scale the model input as the scheduler needs
      const modelInput = scheduler.scaleModelInput(expanded, t);
      // predict the noise residual
      const out = await unet.run(
        {
          [sampleName]: { data: modelInput, dims: [rows, channels, h, w] },
          [timestepName]: this.timestepFeed(t, rows),
          ...conditioning,
        },
        [outName],
      );
      const pred = out[outName].data;
      // combine: uncond + cfg * (cond - uncond)
      let noisePred: Float32Array;
      if (guidance) {
        const n = samples * latentSize;
        noisePred = new Float32Array(n);
        for (let k = 0; k < n; k++) noisePred[k] = pred[k] + cfgScale * (pred[n + k] - pred[k]);
      } else {
        noisePred = pred;
      }
      // step: x_t -> x_t-1
      latents = scheduler.step(noisePred, t, latents, rng).prevSample;
      // masking: outside the mask, put back the original latents noised to the next timestep
      if (latentMask && initLatents) {
        const known = i + 1 < total ? scheduler.addNoise(initLatents, noise, timesteps[i + 1]) : initLatents;
        const plane = h * w;
        for (let k = 0; k < latents.length; k++) {
          const m = latentMask[k % plane];
          latents[k] = m * latents[k] + (1 - m) * known[k];
        }
      }
      for (const m of live) m.req.onProgress?.({ step: i + 1, total, elapsedMs: performance.now() - started });
    }
    dropCanceled(`after step ${total} of ${total}`);
    if (!live.size) return { decoded: [], truncatedTokens: [] };

    // 5. decode the latents (masked results are composed over the original pixels by the caller)
    const decoded = await this.decodeLatents(latents, samples, h, w);
    return { decoded, latents, truncatedTokens: prompts.map((p) => p.truncatedTokens), initImage, pixelMask };
  }

  /** A request's safety mode: its own, else blur where a checker is loaded. */
  safetyMode(req: Pick<GenerateRequest, 'safety'>): SafetyMode {
    return req.safety ?? (this.safety ? 'blur' : 'off');
  }

  /** The checker's flag for each image of a run whose request's mode checks (false for the rest). */
  private async safetyFlags(subs: Member[], decoded: PlanarImage[]): Promise<boolean[]> {
    const flags = new Array<boolean>(decoded.length).fill(false);
    if (!this.safety) return flags;
    const checked = subs.filter((sub) => this.safetyMode(sub.req) !== 'off').flatMap((sub) => Array.from({ length: sub.r.samples }, (_, s) => sub.offset + s));
    if (!checked.length) return flags;
    const found = await this.safety.flags(checked.map((i) => decoded[i]));
    checked.forEach((i, k) => (flags[i] = found[k]));
    return flags;
  }

  /** AUTOMATIC1111's "parameters" text: prompt, negative prompt, then one line of settings (its sampler names). */
  private parameters(r: CheckedRequest, seed: number, req: GenerateRequest): string {
    const join = (ps: WeightedPrompt[]) => ps.map((p) => (Math.abs(p.weight ?? 1) === 1 ? p.text : `(${p.text}:${Math.abs(p.weight ?? 1)})`)).join(', ');
    const lines = [join(r.positive)];
    if (r.negative.length) lines.push(`Negative prompt: ${join(r.negative)}`);
    const settings = [
      `Steps: ${r.steps}`,
      `Sampler: ${a1111SamplerName(r.samplerName, r.schedulerConfig)}`,
      `CFG scale: ${r.cfgScale}`,
      `Seed: ${seed}`,
      `Size: ${r.width}x${r.height}`,
      `Model: ${req.engineId ?? this.engineId}`,
    ];
    if (req.initImage || req.initLatents) settings.push(`Denoising strength: ${req.maskSource && req.imageStrength === undefined ? 1 : +(1 - r.imageStrength).toFixed(4)}`);
    for (const [key, value] of Object.entries(req.parametersExtra ?? {})) settings.push(`${key}: ${value}`);
    lines.push(settings.join(', '));
    return lines.join('\n');
  }
}

/** The members' images in runs of at most `perRun`, in order; a member's images may span runs. */
function splitRuns(members: Member[], perRun: number): { member: Member; from: number; count: number }[][] {
  const runs: { member: Member; from: number; count: number }[][] = [];
  let run: { member: Member; from: number; count: number }[] = [];
  let room = perRun;
  for (const member of members) {
    let from = 0;
    while (from < member.r.samples) {
      const count = Math.min(room, member.r.samples - from);
      run.push({ member, from, count });
      from += count;
      room -= count;
      if (room === 0) {
        runs.push(run);
        run = [];
        room = perRun;
      }
    }
  }
  if (run.length) runs.push(run);
  return runs;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Pixel mask -> latent mask by averaging each factor x factor cell. */
function downsampleMask(mask: Float32Array, width: number, height: number, factor: number): Float32Array {
  const w = width / factor;
  const h = height / factor;
  const out = new Float32Array(w * h);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) out[Math.floor(y / factor) * w + Math.floor(x / factor)] += mask[y * width + x];
  }
  const area = factor * factor;
  for (let i = 0; i < out.length; i++) out[i] /= area;
  return out;
}

/** Where the mask is 0 the original pixels are kept exactly; the VAE round trip would blur them. */
function composite(image: PlanarImage, original: PlanarImage, mask: Float32Array): void {
  const plane = image.width * image.height;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const m = mask[i];
      const k = c * plane + i;
      image.data[k] = m * image.data[k] + (1 - m) * original.data[k];
    }
  }
}
