/**
 * What travels through the queue: the payload the API enqueues, the progress and the result the worker
 * reports, and the public job object the API builds from them.
 *
 * Images never travel in the payload: the API stores uploads under `inputs/<job id>/...` in the storage
 * backend and the payload names their keys; the worker downloads them, generates, uploads each image to
 * `generations/<job id>/<index>.<ext>` and returns the keys as its result.
 */
import { LORA_WEIGHT_MAX, LORA_WEIGHT_MIN, MAX_LORAS } from './lora-tags';
import { z } from 'zod';
import { JOB_NAMES, type JobName } from './queues';
import { MASK_SOURCES } from './requests';

export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const CONTENT_TYPES: Record<OutputFormat, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };
const EXTENSIONS: Record<OutputFormat, string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

/** Storage key of a job's index-th output image. */
export function artifactKey(jobId: string, index: number, format: OutputFormat): string {
  return `generations/${jobId}/${index}.${EXTENSIONS[format]}`;
}
/**
 * Animations (the `animation` job): the formats written, their content types, and where the file and
 * its frames are stored. Frame i is `artifactKey(job, i, 'png')`, so a retried job finds the frames an
 * earlier attempt stored and goes on from there.
 */
export const ANIMATION_FORMATS = ['webp', 'gif', 'mp4'] as const;
export type AnimationFormat = (typeof ANIMATION_FORMATS)[number];
export const ANIMATION_CONTENT_TYPES: Record<AnimationFormat, string> = { webp: 'image/webp', gif: 'image/gif', mp4: 'video/mp4' };
export const ANIMATION_MODES = ['travel', 'feedback'] as const;
export const INTERPOLATIONS = ['linear', 'slerp'] as const;
/** Storage key of a job's animation file. */
export function animationKey(jobId: string, format: AnimationFormat): string {
  return `generations/${jobId}/animation.${format}`;
}

/** Storage key prefixes owned by a job: removed with it when its results expire. */
export function jobKeyPrefixes(jobId: string): string[] {
  return [`generations/${jobId}/`, `inputs/${jobId}/`];
}
/** Storage key of an uploaded input (`init_image`, `mask_image`, `image`). */
export function inputKey(jobId: string, field: 'init_image' | 'mask_image' | 'image'): string {
  return `inputs/${jobId}/${field}`;
}

/**
 * What becomes of an image the safety checker flags (SAFETY_MODE, or the account's own): blurred, black,
 * refused (the job fails content_filtered), flagged (as made, marked), or nothing checked (off).
 */
export const SAFETY_MODES = ['blur', 'black', 'refuse', 'flag', 'off'] as const;
export type SafetyMode = (typeof SAFETY_MODES)[number];

const WeightedPrompt = z.object({ text: z.string(), weight: z.number().optional() });

/**
 * The generation options, declared once: what a job carries and what the pipeline's GenerateRequest is
 * made of (it takes these fields, each optional there but the prompts). In a job they are already
 * resolved by the API: defaults applied, width/height concrete, style preset appended to the prompts,
 * image strength computed from the init image mode. The worker passes them through as they are. The
 * defaults below are the pipeline's, for a caller that leaves a field out (the CLI).
 */
export const GenerationParams = z.object({
  /** Stability-style prompts: positive weights condition the image, negative ones form the negative prompt. */
  prompts: z.array(WeightedPrompt).min(1),
  /** Default: the engine's native size (the denoiser's sample_size x the VAE's scale factor). */
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  /** Default 30 (the family's: SD3 28). */
  steps: z.number().int().positive(),
  /** Default 7. Guidance is off when <= 1. */
  cfgScale: z.number(),
  /** Images in one batch. Default 1. */
  samples: z.number().int().positive(),
  /** 0 = random (the pipeline picks); sample i uses seed + i. */
  seed: z.number().int().min(0),
  /** Stability sampler name (K_EULER, DDIM, ...). Default: the folder's own scheduler_config.json. */
  sampler: z.string().optional(),
  /** image-to-image and masking: the fraction of the init image kept (Stability's image_strength). Default 0.35. */
  imageStrength: z.number().min(0).max(1).optional(),
  /** masking: which pixels are repainted. */
  maskSource: z.enum(MASK_SOURCES).optional(),
  /** Default png. */
  outputFormat: z.enum(OUTPUT_FORMATS),
  /** Recorded for the job's history; already applied to `prompts`. */
  stylePreset: z.string().optional(),
  /** SDXL, SD3: the second text encoder's prompt. Default: the prompts. */
  prompt2: z.string().optional(),
  /** SD3: the T5 encoder's prompt. Default: the prompts. */
  prompt3: z.string().optional(),
  /** SDXL micro-conditioning: the size the image is said to come from. Default: the output size. */
  originalSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).optional(),
  /** SDXL micro-conditioning: the crop's top-left corner. Default 0, 0. */
  cropTopLeft: z.object({ top: z.number().int().min(0), left: z.number().int().min(0) }).optional(),
  /** LoRAs merged for this job: LORA_DIR file stems with their weights. None: the engine as exported. */
  loras: z
    .array(
      z.object({
        name: z.string().min(1).max(128),
        weight: z.number().min(LORA_WEIGHT_MIN).max(LORA_WEIGHT_MAX),
        /** The file's modules, and how many name a layer of the engine (the rest are logged, not applied). */
        modules: z.number().int().min(0).optional(),
        matched: z.number().int().min(0).optional(),
      }),
    )
    .max(MAX_LORAS)
    .optional(),
  /**
   * Hires fix (text-to-image): after this size, an upscale (a latent mode, Lanczos, Nearest, or an
   * upscale engine's id) to width x height and an image-to-image pass there, as one job.
   */
  hires: z
    .object({
      width: z.number().int().positive(),
      height: z.number().int().positive(),
      upscaler: z.string().min(1).max(128),
      /** The second pass's steps; default the first pass's. */
      steps: z.number().int().positive().optional(),
      denoisingStrength: z.number().min(0).max(1),
      sampler: z.string().optional(),
      prompts: z.array(WeightedPrompt).min(1).optional(),
      /** What the PNG parameters say of the upscale (`Hires upscale: 2` or `Hires resize: 256x256`). */
      label: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
    })
    .optional(),
  /** The safety checker's mode for this job (the account's, else SAFETY_MODE). None: blur where the engine has a checker. */
  safety: z.enum(SAFETY_MODES).optional(),
  /** Embeddings (EMBEDDINGS_DIR file stems) whose trigger words the prompts use, added to the text encoders for this job. */
  embeddings: z.array(z.string().min(1).max(128)).max(64).optional(),
});
export type GenerationParams = z.infer<typeof GenerationParams>;

/**
 * An animation, beside the generation options its frames share (`GenerationParams`: size, steps,
 * guidance, sampler, adapters; its `prompts` and `seed` are the first keyframe's, `samples` is 1).
 * Resolved by the API: keyframes sorted and checked, seeds concrete (a retried job draws the same
 * frames), style preset applied to every keyframe's prompts.
 */
export const AnimationSpec = z.object({
  /** Frames in all (2 to MAX_ANIMATION_FRAMES). */
  frames: z.number().int().min(2),
  /** At least one; frames strictly increasing, the first at 0, every one below `frames`. After the last, its prompts and seed hold. */
  keyframes: z
    .array(z.object({ frame: z.number().int().min(0), prompts: z.array(WeightedPrompt).min(1), seed: z.number().int().min(1) }))
    .min(1),
  /** How the text encoders' states go from one keyframe to the next (the starting noise is always slerped). */
  interpolation: z.enum(INTERPOLATIONS),
  /** travel: every frame from its own noise (frames batch); feedback: each frame an image-to-image of the previous one. */
  mode: z.enum(ANIMATION_MODES),
  /** feedback: the part of the previous frame kept (Deforum's strength, Stability's image_strength). */
  strength: z.number().min(0).max(1),
  fps: z.number().int().min(1).max(60),
  format: z.enum(ANIMATION_FORMATS),
  /** webp and gif: play for ever (true) or once; mp4 has no loop flag. */
  loop: z.boolean(),
});
export type AnimationSpec = z.infer<typeof AnimationSpec>;
export const AnimationParams = GenerationParams.extend({ animation: AnimationSpec });
export type AnimationParams = z.infer<typeof AnimationParams>;

export const UpscaleParams = z.object({
  safety: z.enum(SAFETY_MODES).optional(),
  width: z.number().int().positive().optional(),
  height: z.number().int().positive().optional(),
  outputFormat: z.enum(OUTPUT_FORMATS),
});
export type UpscaleParams = z.infer<typeof UpscaleParams>;

const common = {
  /** Bumped when the payload changes incompatibly; a worker refuses versions it does not know. */
  version: z.literal(1),
  jobId: z.string().min(1),
  accountId: z.string().min(1),
  engineId: z.string().min(1),
  /** Unix ms. */
  createdAt: z.number().int(),
};

export const JobPayload = z.discriminatedUnion('kind', [
  z.object({ ...common, kind: z.literal('text-to-image'), params: GenerationParams }),
  z.object({ ...common, kind: z.literal('image-to-image'), params: GenerationParams, inputs: z.object({ initImage: z.string() }) }),
  z.object({
    ...common,
    kind: z.literal('masking'),
    params: GenerationParams,
    inputs: z.object({ initImage: z.string(), maskImage: z.string().optional() }),
  }),
  z.object({ ...common, kind: z.literal('upscale'), params: UpscaleParams, inputs: z.object({ image: z.string() }) }),
  // width and height: the output size; imageStrength: the part of each tile kept
  z.object({ ...common, kind: z.literal('enhance'), params: GenerationParams, inputs: z.object({ image: z.string() }) }),
  z.object({ ...common, kind: z.literal('animation'), params: AnimationParams }),
]);
export type JobPayload = z.infer<typeof JobPayload>;
export type JobPayloadOf<K extends JobName> = Extract<JobPayload, { kind: K }>;

/** A job as a route builds it, derived from its payload: its kind and parameters (the API adds ids, dates and stored inputs). */
export type NewJobOf<K extends JobName> = { kind: K; params: JobPayloadOf<K>['params'] };
export type NewJob = { [K in JobName]: NewJobOf<K> }[JobName];

/** A job's stored inputs by name (`initImage`, `maskImage`, `image`): every name some kind's payload has. */
export type JobInputName = { [K in JobName]: JobPayloadOf<K> extends { inputs: infer I } ? keyof I : never }[JobName];

export { JOB_NAMES };

/**
 * What the worker reports after every step: `job.updateProgress({ step, steps })` (step counts from 1).
 * Before the first, while a worker loads the job's engine for it, `phase` is `loading model` (step 0).
 * An animation counts steps across all its frames and adds the frames stored so far.
 */
export const JobProgress = z.object({
  step: z.number().int().min(0),
  steps: z.number().int().min(0),
  phase: z.enum(['loading model']).optional(),
  frames_done: z.number().int().min(0).optional(),
  frames: z.number().int().min(0).optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

export const FINISH_REASONS = ['SUCCESS', 'ERROR', 'CONTENT_FILTERED'] as const;

/** One stored image, as the worker returns it. */
export const StoredArtifact = z.object({
  key: z.string(),
  seed: z.number().int(),
  finish_reason: z.enum(FINISH_REASONS),
  content_type: z.string(),
  width: z.number().int(),
  height: z.number().int(),
});
export type StoredArtifact = z.infer<typeof StoredArtifact>;

/** The worker processor's return value (BullMQ `returnvalue`). */
export const JobResult = z.object({ artifacts: z.array(StoredArtifact) });
export type JobResult = z.infer<typeof JobResult>;

/** A live worker, as GET /v1/admin/workers lists it. Times are ISO 8601. */
export const WorkerObject = z.object({
  id: z.string(),
  host: z.string(),
  pid: z.number().int(),
  engines: z.array(z.string()),
  /** The execution provider each engine got (cuda, cpu, ...). */
  providers: z.record(z.string(), z.string()),
  /** The jobs it is running now (empty when idle). */
  current_jobs: z.array(z.string()),
  /** Jobs it finished (succeeded or failed) since it started. */
  jobs_done: z.number().int(),
  /** Engines it has loaded now (a subset of `engines`: the rest it loads when a job for one waits). */
  loaded: z.array(z.string()),
  /** Engines it is loading now or could not load (with why), beside those it serves (`engines`). */
  engine_states: z.record(z.string(), z.object({ state: z.enum(['loading', 'failed']), reason: z.string().optional() })),
  started_at: z.string(),
  last_heartbeat: z.string(),
});
export type WorkerObject = z.infer<typeof WorkerObject>;
export const WorkerList = z.object({ data: z.array(WorkerObject) });

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'canceled']);

/**
 * The settings a job was made with, in Stability's v1 field names, so a client can show them and post
 * them again (the studio's "reuse settings"). Upscales have width/height only.
 */
export const JobParamsView = z
  .object({
    text_prompts: z.array(z.object({ text: z.string(), weight: z.number() })),
    width: z.number().int(),
    height: z.number().int(),
    steps: z.number().int(),
    cfg_scale: z.number(),
    sampler: z.string(),
    samples: z.number().int(),
    /** As asked: 0 = random (each artifact has the seed it used). */
    seed: z.number().int(),
    image_strength: z.number(),
    style_preset: z.string(),
    /** The LoRAs merged (tags and the loras field together), each with its modules and how many named a layer. */
    loras: z.array(z.object({ name: z.string(), weight: z.number(), modules: z.number().int().optional(), matched: z.number().int().optional() })),
    /** The embeddings whose words the prompts used. */
    embeddings: z.array(z.string()),
    /** The safety mode the job ran with (the account's, else SAFETY_MODE). */
    safety: z.enum(SAFETY_MODES),
    /** An animation's own settings, in its request's field names (keyframes with their resolved seeds). */
    animation: z.object({
      frames: z.number().int(),
      keyframes: z.array(z.object({ frame: z.number().int(), text_prompts: z.array(z.object({ text: z.string(), weight: z.number() })), seed: z.number().int() })),
      interpolation: z.enum(INTERPOLATIONS),
      mode: z.enum(ANIMATION_MODES),
      strength: z.number(),
      fps: z.number().int(),
      format: z.enum(ANIMATION_FORMATS),
      loop: z.boolean(),
    }),
  })
  .partial()
  .meta({ id: 'JobParams' });
export type JobParamsView = z.infer<typeof JobParamsView>;

/** The public view of a job's params (no input keys, no internal fields). */
export function jobParamsView(job: { kind: JobName; params: GenerationParams | UpscaleParams }): JobParamsView {
  if (job.kind === 'upscale') {
    const p = job.params as UpscaleParams;
    return { ...(p.width !== undefined ? { width: p.width } : {}), ...(p.height !== undefined ? { height: p.height } : {}), ...(p.safety ? { safety: p.safety } : {}) };
  }
  const p = job.params as GenerationParams;
  const view: JobParamsView = { text_prompts: p.prompts.map(({ text, weight }) => ({ text, weight: weight ?? 1 })), width: p.width, height: p.height, steps: p.steps, cfg_scale: p.cfgScale, samples: p.samples, seed: p.seed };
  if (p.sampler !== undefined) view.sampler = p.sampler;
  if (p.imageStrength !== undefined) view.image_strength = p.imageStrength;
  if (p.stylePreset !== undefined) view.style_preset = p.stylePreset;
  if (p.loras?.length) view.loras = p.loras.map((l) => ({ ...l }));
  if (p.embeddings?.length) view.embeddings = [...p.embeddings];
  if (p.safety) view.safety = p.safety;
  if (job.kind === 'animation') {
    const { keyframes, ...rest } = (p as AnimationParams).animation;
    view.animation = { ...rest, keyframes: keyframes.map((k) => ({ frame: k.frame, text_prompts: k.prompts.map(({ text, weight }) => ({ text, weight: weight ?? 1 })), seed: k.seed })) };
  }
  return view;
}

/** The public job object (GET /v1/jobs/{id}, 202 answers, SSE events). Times are ISO 8601. */
export const JobObject = z
  .object({
    id: z.string(),
    status: z.enum(JOB_STATUSES),
    engine: z.string(),
    kind: z.enum(JOB_NAMES),
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    /** Jobs ahead of this one in its engine's queue (0 = next); null unless queued. */
    queue_position: z.number().int().nullable(),
    progress: JobProgress.nullable(),
    artifacts: z.array(
      z.object({
        url: z.string(),
        seed: z.number().int(),
        finish_reason: z.enum(FINISH_REASONS),
        content_type: z.string(),
        width: z.number().int(),
        height: z.number().int(),
        /** The safety checker flagged it (finish_reason CONTENT_FILTERED): blurred, black or, in flag mode, as made. */
        content_filtered: z.boolean(),
      }),
    ),
    error: z.object({ name: z.string(), message: z.string() }).nullable(),
    /** Credits charged (decimal): the cost once succeeded, 0 once failed or canceled, null while open. */
    credits_charged: z.number().nullable(),
    /** What the job was asked to do; null for a job made before sdq recorded it. */
    params: JobParamsView.nullable(),
    urls: z.object({ self: z.string(), cancel: z.string(), events: z.string() }),
  })
  .meta({ id: 'Job' });
export type JobObject = z.infer<typeof JobObject>;
