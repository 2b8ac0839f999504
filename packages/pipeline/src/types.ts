import type { GenerationParams } from '@sdq/contracts';

/** A Stability-style prompt: positive weights condition the image, negative weights form the negative prompt. */
export interface WeightedPrompt {
  text: string;
  /** Default 1. Negative = negative prompt. */
  weight?: number;
}

export type OutputFormat = 'png' | 'jpeg' | 'webp';

/** Which pixels of a masking request are repainted. */
export type MaskSource = 'MASK_IMAGE_WHITE' | 'MASK_IMAGE_BLACK' | 'INIT_IMAGE_ALPHA';

export interface ProgressEvent {
  step: number;
  total: number;
  elapsedMs: number;
}

/**
 * The generation options, declared once: they are the job's `GenerationParams` (@sdq/contracts'
 * jobs.ts, where each is documented), so an option added there reaches the pipeline without a copy.
 * Here every one is optional but the prompts: the pipeline resolves what a caller (the CLI, a bench)
 * leaves out. `stylePreset` is the job's record only (the API applied it to the prompts).
 */
type GenerationOptions = Pick<GenerationParams, 'prompts'> & Partial<Omit<GenerationParams, 'prompts' | 'stylePreset'>>;

export interface GenerateRequest extends GenerationOptions {
  /** Encoded image (PNG/JPEG/WebP) for image-to-image and masking. */
  initImage?: Buffer;
  /** Encoded mask image; with maskSource selects masking mode. */
  maskImage?: Buffer;
  /** Engine id written into the PNG parameters chunk. */
  engineId?: string;
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
  /**
   * Conditioning made by the caller (an animation's frame between two keyframes), used instead of
   * encoding the prompts; it must have been made by this pipeline's `conditioning()` for the same
   * guidance. The prompts still name the image (its PNG parameters).
   */
  conditioning?: Conditioning;
  /** The starting noise of each sample, instead of the seeds' (an animation's slerped noise): samples x the latent size. */
  latentNoise?: Float32Array;
  /**
   * Image-to-image from latents instead of an image (hires fix's Latent upscale): one sample's latents
   * at this request's size, as the denoiser makes them (scaled), used for every sample; with imageStrength.
   */
  initLatents?: Float32Array;
  /** Keep each image's final latents in the result (hires fix's first pass). */
  keepLatents?: boolean;
  /** More `Key: value` settings for the PNG parameters line (hires fix's, as A1111 writes them). */
  parametersExtra?: Record<string, string | number>;
}

/** One conditioning input of the UNet, a row per image: the conditional row and, with guidance, the unconditional one. */
export interface ConditioningInput {
  /** The UNet input it feeds (encoder_hidden_states, text_embeds, time_ids, ...). */
  name: string;
  /** Dimensions of one row, without the batch. */
  rowDims: number[];
  cond: Float32Array;
  uncond?: Float32Array;
}

export interface Conditioning {
  inputs: ConditioningInput[];
  /** Prompt tokens dropped because they did not fit a text encoder's window. */
  truncatedTokens: number;
}

export type FinishReason = 'SUCCESS' | 'ERROR' | 'CONTENT_FILTERED';

export interface GeneratedImage {
  data: Buffer;
  /** The denoised latents it was decoded from, when the request asked to keep them. */
  latents?: Float32Array;
  seed: number;
  contentType: string;
  width: number;
  height: number;
  finishReason: FinishReason;
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** Prompt tokens dropped because they did not fit the text encoder's window. */
  truncatedTokens: number;
  timings: { totalMs: number; onnxMs: number };
  /** Denoising runs its images took: more than 1 when the memory bound split them into micro-batches. */
  runs: number;
}

export interface UpscaleRequest {
  image: Buffer;
  /** The safety mode of the upscaled image; default blur where a checker is loaded. */
  safety?: GenerationParams['safety'];
  /** Target width or height (not both); default = native scale. */
  width?: number;
  height?: number;
  outputFormat?: OutputFormat;
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

/** Execution providers, in priority order. */
export type ExecutionProvider = 'cpu' | 'cuda' | 'tensorrt' | 'webgpu';

export interface RuntimeOptions {
  /** Default ['cpu']. */
  providers?: ExecutionProvider[];
  /** When a provider cannot load, try the next one (with a warning) instead of failing. Default false. */
  fallback?: boolean;
  /** onnxruntime intra-op threads; default: the CPUs this process may use (affinity, cgroup quota). */
  threads?: number;
  /**
   * Let idle onnxruntime threads spin-wait for work. Default false: spinning threads steal the CPU from
   * the other processes of a service and from each other when cores are shared.
   */
  spinning?: boolean;
  /**
   * onnxruntime's CPU memory arena. Default false: with shapes that change from request to request the
   * arena keeps the peak of the largest run for ever (measured: tiny-sd at 512x512 held 2.6 GB after the
   * run, 0.44 GB without it) and onnxruntime-node cannot ask it to shrink. Without it, large buffers come
   * from malloc and go back at once; GLIBC_TUNABLES=glibc.malloc.hugetlb=1 keeps that about as fast.
   */
  memoryArena?: boolean;
  /** Called with warnings (provider fallback). Default console.warn. */
  warn?: (message: string) => void;
}
