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

export interface GenerateRequest {
  prompts: WeightedPrompt[];
  /** Default: the engine's native size (unet sample_size x VAE scale factor). */
  width?: number;
  height?: number;
  /** Default 30. */
  steps?: number;
  /** Default 7. Guidance is off when <= 1. */
  cfgScale?: number;
  /** Images in one batch. Default 1. */
  samples?: number;
  /** 0 or undefined = random; sample i uses seed + i. */
  seed?: number;
  /** Stability sampler name (K_EULER, DDIM, ...). Default: the model's own scheduler_config.json. */
  sampler?: string;
  /** Encoded image (PNG/JPEG/WebP) for image-to-image and masking. */
  initImage?: Buffer;
  /** Fraction of the init image kept (Stability's image_strength). Default 0.35. */
  imageStrength?: number;
  /** Encoded mask image; with maskSource selects masking mode. */
  maskImage?: Buffer;
  maskSource?: MaskSource;
  /** Default png. */
  outputFormat?: OutputFormat;
  /** Engine id written into the PNG parameters chunk. */
  engineId?: string;
  /** SDXL and SD3: the prompt of the second text encoder. Default: the prompts. */
  prompt2?: string;
  /** SD3: the prompt of the third (T5) text encoder. Default: the prompts. */
  prompt3?: string;
  /** SDXL micro-conditioning: the size the image is said to come from. Default: the output size. */
  originalSize?: { width: number; height: number };
  /** SDXL micro-conditioning: the crop's top-left corner. Default 0, 0. */
  cropTopLeft?: { top: number; left: number };
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export type FinishReason = 'SUCCESS' | 'ERROR' | 'CONTENT_FILTERED';

export interface GeneratedImage {
  data: Buffer;
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
