/**
 * Request schemas of the public API. The API validates with these and /openapi.json is generated from
 * them, so the document cannot drift from what is enforced. Field names, ranges and defaults are
 * Stability v1's; every documented Stability field is accepted, even those sdq ignores.
 */
import { z } from 'zod';
import type { ErrorName } from './errors';
import { LORA_WEIGHT_MAX, LORA_WEIGHT_MIN, MAX_LORAS } from './lora-tags';

/**
 * The samplers sdq runs: every name of Stability's v1 list, plus PNDM, LCM and a Karras variant.
 * FLOW_MATCH_EULER is SD3's. Any other name is refused at submission (invalid_sampler, listing these).
 * test/contracts-pipeline.test.ts keeps this list equal to the pipeline's own.
 */
export const SAMPLERS = [
  'DDIM',
  'K_EULER',
  'K_EULER_ANCESTRAL',
  'K_DPMPP_2M',
  'K_DPMPP_2M_KARRAS',
  'PNDM',
  'LCM',
  'DDPM',
  'K_HEUN',
  'K_DPM_2',
  'K_DPM_2_ANCESTRAL',
  'K_LMS',
  'K_DPMPP_2S_ANCESTRAL',
  'K_DPMPP_SDE',
  'FLOW_MATCH_EULER',
] as const;

export const CLIP_GUIDANCE_PRESETS = ['FAST_BLUE', 'FAST_GREEN', 'NONE', 'SIMPLE', 'SLOW', 'SLOWER', 'SLOWEST'] as const;

/**
 * Stability's style presets and the text each adds to the positive prompts on an engine whose manifest
 * sets no style_presets table of its own.
 */
export const STYLE_PRESETS = {
  '3d-model': '3d model, octane render, highly detailed, volumetric',
  'analog-film': 'analog film photo, faded film, desaturated, grainy, vignette',
  anime: 'anime artwork, anime style, key visual, vibrant, studio anime, highly detailed',
  cinematic: 'cinematic film still, shallow depth of field, vignette, highly detailed, film grain',
  'comic-book': 'comic book style, graphic illustration, comic art, graphic novel art, vibrant',
  'digital-art': 'digital artwork, illustrative, painterly, matte painting, highly detailed',
  enhance: 'breathtaking, award-winning, professional, highly detailed',
  'fantasy-art': 'ethereal fantasy concept art, magnificent, celestial, painterly, epic',
  isometric: 'isometric style, vibrant, beautiful, crisp, detailed, ultra detailed, intricate',
  'line-art': 'line art drawing, professional, sleek, modern, minimalist, graphic, line art, vector graphics',
  'low-poly': 'low-poly style, low-poly game art, polygon mesh, jagged, blocky, wireframe edges, centered composition',
  'modeling-compound': 'play-doh style, sculpture, clay art, centered composition, claymation',
  'neon-punk': 'neonpunk style, cyberpunk, vaporwave, neon, vibes, vibrant, stunningly beautiful, crisp, detailed',
  origami: 'origami style, paper art, pleated paper, folded, origami art, pleats, cut and fold, centered composition',
  photographic: 'cinematic photo, 35mm photograph, film, bokeh, professional, 4k, highly detailed',
  'pixel-art': 'pixel-art, low-res, blocky, pixel art style, 8-bit graphics',
  'tile-texture': 'tile texture, seamless, repeating pattern',
} as const;
export type StylePreset = keyof typeof STYLE_PRESETS;
export const STYLE_PRESET_NAMES = Object.keys(STYLE_PRESETS) as [StylePreset, ...StylePreset[]];

export const MAX_PROMPT_LENGTH = 2000;
export const MAX_SEED = 4_294_967_295;

const dimension = (axis: 'height' | 'width') =>
  z
    .number()
    .int()
    .min(128)
    .multipleOf(64, 'must be a multiple of 64')
    .optional()
    .describe(`Output ${axis} in pixels: a multiple of 64, at least 128. Default: the engine's native size (text-to-image) or the init image's (image-to-image).`);

export const TextPrompt = z.object({
  text: z.string().trim().min(1, 'must not be empty').max(MAX_PROMPT_LENGTH, `must be at most ${MAX_PROMPT_LENGTH} characters`),
  weight: z.number().finite().optional().describe('Default 1; a negative weight makes a negative prompt.'),
});

/** The names a client uses in `webhook_events_filter` (@sdq/webhooks maps them to event types). */
export const WEBHOOK_EVENTS_FILTER_NAMES = ['start', 'progress', 'completed'] as const;

/** Fields every job-creating endpoint takes: a callback instead of polling (sdq's addition). */
export const webhookFields = {
  webhook: z
    .string()
    .max(2048, 'must be at most 2048 characters')
    .optional()
    .describe(
      'An http or https URL called back (signed, Standard Webhooks) with the job\'s events; checked against the SSRF rules at submission. Default: the account\'s default webhook, if set.',
    ),
  webhook_events_filter: z
    .array(z.enum(WEBHOOK_EVENTS_FILTER_NAMES, { error: () => `unknown event; valid events: ${WEBHOOK_EVENTS_FILTER_NAMES.join(', ')}` }))
    .min(1, 'must name at least one event')
    .max(WEBHOOK_EVENTS_FILTER_NAMES.length)
    .optional()
    .describe('Which events are sent: start, progress (at most one per second), completed. Default ["completed"]. Multipart: repeated fields, a JSON array or a comma list.'),
};

/**
 * sdq's extension on every generating route: LoRA files of LORA_DIR merged for this request, beside the
 * `<lora:name:weight>` tags A1111's syntax puts in the prompt text (the weights of one name add).
 */
export const LorasField = z
  .array(
    z.object({
      name: z.string().min(1).max(128).describe('A LoRA file of LORA_DIR by its stem (GET /v1/loras lists them).'),
      weight: z.number().min(LORA_WEIGHT_MIN).max(LORA_WEIGHT_MAX).default(1).describe(`From ${LORA_WEIGHT_MIN} to ${LORA_WEIGHT_MAX}. Default 1.`),
    }),
  )
  .max(MAX_LORAS, `at most ${MAX_LORAS} LoRAs`)
  .optional()
  .describe(`sdq's extension: LoRAs merged for this request (at most ${MAX_LORAS}). Multipart: a JSON array, or loras[0][name] / loras[0][weight]. A name that is not a LoRA file here, or a LoRA for another family, is 400 invalid_lora.`);

/** Fields every generation endpoint shares. */
const generationFields = {
  ...webhookFields,
  loras: LorasField,
  text_prompts: z
    .array(TextPrompt)
    .min(1, 'at least one prompt is required')
    .max(10, 'at most 10 prompts')
    // Weights <= 0 only make negative prompts: with no positive one there is nothing to draw.
    .refine((prompts) => prompts.some((p) => (p.weight ?? 1) > 0), 'at least one prompt must have a weight above 0'),
  height: dimension('height'),
  width: dimension('width'),
  cfg_scale: z.number().min(0).max(35).default(7).describe('How strictly the image follows the prompt. Default 7.'),
  clip_guidance_preset: z.enum(CLIP_GUIDANCE_PRESETS).default('NONE').describe('Accepted as Stability documents it; sdq has no CLIP guidance, so every value gives the image NONE gives.'),
  sampler: z
    .enum(SAMPLERS, { error: () => `unknown sampler; valid samplers: ${SAMPLERS.join(', ')}` })
    .optional()
    .describe("Default: the engine's own scheduler."),
  samples: z.number().int().min(1).max(10).default(1).describe('Images to generate. Default 1.'),
  seed: z.number().int().min(0).max(MAX_SEED).default(0).describe('0 = random; sample i uses seed + i.'),
  steps: z.number().int().min(10).max(150).default(30).describe('Denoising steps. Default 30.'),
  style_preset: z.enum(STYLE_PRESET_NAMES).optional().describe("Adds the engine's text for this preset to the positive prompts: its manifest's style_presets, else Stability's table (the tiny engines add nothing)."),
  extras: z
    .record(z.string().max(128), z.unknown())
    .refine((extras) => JSON.stringify(extras).length <= 16_384, { message: 'must be at most 16384 characters as JSON' })
    .optional()
    .describe('Accepted for compatibility; sdq ignores it (at most 16 KB as JSON).'),
  // SDXL's own inputs (diffusers' prompt_2, original_size, crops_coords_top_left); other families ignore them.
  prompt_2: z.string().trim().min(1).max(MAX_PROMPT_LENGTH).optional().describe("SDXL, SD3: the second text encoder's prompt. Default: text_prompts."),
  prompt_3: z.string().trim().min(1).max(MAX_PROMPT_LENGTH).optional().describe("SD3: the third (T5) text encoder's prompt. Default: text_prompts."),
  original_width: z.number().int().min(1).max(16384).optional().describe('SDXL micro-conditioning: the width the image is said to come from. Default: the output width.'),
  original_height: z.number().int().min(1).max(16384).optional().describe('SDXL micro-conditioning: the original height. Default: the output height.'),
  crop_top: z.number().int().min(0).max(16384).default(0).describe('SDXL micro-conditioning: the crop\'s top edge. Default 0.'),
  crop_left: z.number().int().min(0).max(16384).default(0).describe('SDXL micro-conditioning: the crop\'s left edge. Default 0.'),
};

/** An uploaded file in a multipart body; validated by the API (size, type, dimensions), not by zod. */
const file = (description: string) =>
  z.custom<Buffer>((v) => Buffer.isBuffer(v)).meta({ type: 'string', contentMediaType: 'application/octet-stream', description });

/** sdq's two-pass option on text-to-image (A1111's hires fix): an upscale of the first pass, then image-to-image there. */
export const HiresFixField = z
  .object({
    width: dimension('width').describe('The second pass\'s width: a multiple of 64. Give width and height, or scale.'),
    height: dimension('height').describe('The second pass\'s height: a multiple of 64.'),
    scale: z.number().min(1).max(4).optional().describe('Times the first pass\'s size, instead of width and height (each side must come to a multiple of 64).'),
    upscaler: z.string().min(1).max(128).default('Latent').describe('A latent mode (Latent, Latent (bicubic), Latent (nearest-exact), ...), Lanczos, Nearest, or an upscale engine served beside the engine. Default Latent.'),
    steps: z.number().int().min(1).max(150).optional().describe('The second pass\'s steps. Default: the first pass\'s.'),
    strength: z.number().min(0).max(1).default(0.7).describe('How much the second pass changes the upscaled image (A1111\'s denoising strength). Default 0.7.'),
    sampler: z.enum(SAMPLERS, { error: () => `unknown sampler; valid samplers: ${SAMPLERS.join(', ')}` }).optional().describe("The second pass's sampler. Default: the first pass's."),
  })
  .optional()
  .describe("sdq's extension: hires fix as one job, priced as both passes; the images are the second pass's size.");

export const TextToImageRequest = z.object({ ...generationFields, hires_fix: HiresFixField }).meta({ id: 'TextToImageRequest' });
export type TextToImageRequest = z.infer<typeof TextToImageRequest>;

export const ImageToImageRequest = z
  .object({
    ...generationFields,
    init_image: file('PNG, JPEG or WebP image to start from.'),
    init_image_mode: z.enum(['IMAGE_STRENGTH', 'STEP_SCHEDULE']).default('IMAGE_STRENGTH'),
    image_strength: z.number().min(0).max(1).default(0.35).describe('How much of the init image is kept. Default 0.35.'),
    step_schedule_start: z.number().min(0).max(1).default(0.65).describe('With STEP_SCHEDULE: image_strength = 1 - step_schedule_start.'),
    step_schedule_end: z.number().min(0).max(1).optional().describe('Accepted for compatibility; sdq ignores it.'),
  })
  .meta({ id: 'ImageToImageRequest' });
export type ImageToImageRequest = z.infer<typeof ImageToImageRequest>;

export const MASK_SOURCES = ['MASK_IMAGE_WHITE', 'MASK_IMAGE_BLACK', 'INIT_IMAGE_ALPHA'] as const;

export const MaskingRequest = z
  .object({
    ...generationFields,
    init_image: file('PNG, JPEG or WebP image to repaint.'),
    mask_source: z.enum(MASK_SOURCES).describe('Which pixels are repainted: white or black of mask_image, or transparent ones of init_image.'),
    mask_image: file('Required unless mask_source is INIT_IMAGE_ALPHA; the size of init_image.').optional(),
  })
  .meta({ id: 'MaskingRequest' });
export type MaskingRequest = z.infer<typeof MaskingRequest>;

export const UpscaleRequest = z
  .object({
    image: file('PNG, JPEG or WebP image to upscale.'),
    width: z.number().int().min(1).optional().describe('Target width (not with height). Default: the engine\'s native scale.'),
    height: z.number().int().min(1).optional().describe('Target height (not with width).'),
    ...webhookFields,
  })
  .meta({ id: 'UpscaleRequest' });
export type UpscaleRequest = z.infer<typeof UpscaleRequest>;

/**
 * POST /v1/generation/{engine_id}/animation (sdq's own): the text-to-image fields but the prompts, seed
 * and samples, which the keyframes replace. Order, duplicates and range of the keyframes are checked by
 * the route (they depend on `frames` and MAX_ANIMATION_FRAMES).
 */
export const AnimationRequest = z
  .object({
    ...(({ text_prompts: _p, seed: _s, samples: _n, ...rest }) => rest)(generationFields),
    keyframes: z
      .array(
        z.object({
          frame: z.number().int().min(0).describe('The frame this keyframe sets: the first at 0, then strictly increasing, each below `frames`.'),
          text_prompts: generationFields.text_prompts,
          seed: z.number().int().min(0).max(MAX_SEED).default(0).describe('The starting noise of this keyframe (slerped towards the next one). 0 = random, drawn once at submission.'),
        }),
      )
      .min(1, 'at least one keyframe is required')
      .max(64, 'at most 64 keyframes')
      .describe('The prompts and seeds at given frames; the frames between are interpolated, those after the last hold it.'),
    frames: z.number().int().min(2).describe('Frames in all: 2 to MAX_ANIMATION_FRAMES (default 120).'),
    interpolation: z.enum(['linear', 'slerp']).default('linear').describe("How the text encoders' states go between keyframes: linear (A1111's prompt travel) or slerp. The starting noise is always slerped."),
    mode: z
      .enum(['travel', 'feedback'])
      .default('travel')
      .describe("travel: every frame from its own interpolated noise (frames batch through the denoiser); feedback: each frame after the first is an image-to-image of the previous one (Deforum's way; sequential)."),
    strength: z.number().min(0).max(1).default(0.5).describe('feedback: the part of the previous frame each frame keeps (0 to 1, as image_strength). Default 0.5.'),
    fps: z.number().int().min(1).max(60).default(12).describe('Frames per second, 1 to 60. Default 12 (GIF rounds each delay to 10 ms).'),
    format: z.enum(['webp', 'gif', 'mp4']).default('webp').describe("The animation's format: animated WebP (default), GIF, or H.264 MP4 (needs ffmpeg on the workers)."),
    loop: z.boolean().default(true).describe('webp and gif: play for ever (default) or once. MP4 carries no loop flag.'),
  })
  .meta({ id: 'AnimationRequest' });
export type AnimationRequest = z.infer<typeof AnimationRequest>;

/** Multipart fields that carry numbers (multipart sends every value as a string). */
export const NUMERIC_FORM_FIELDS = new Set([
  'height',
  'width',
  'cfg_scale',
  'samples',
  'seed',
  'steps',
  'image_strength',
  'step_schedule_start',
  'step_schedule_end',
  'weight',
  'original_width',
  'original_height',
  'crop_top',
  'crop_left',
  // v2beta
  'strength',
  'grow_mask',
  'creativity',
  'left',
  'right',
  'up',
  'down',
  // OpenAI's edits and variations
  'n',
  'output_compression',
]);

export const ListJobsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

/**
 * The catalogue name for a validation problem in a field: Stability answers some fields with their own
 * names, everything else is bad_request.
 */
export function errorNameForField(field: string | number | undefined): ErrorName {
  switch (field) {
    case 'text_prompts':
      return 'invalid_prompts';
    case 'keyframes':
      return 'invalid_keyframes';
    case 'frames':
      return 'invalid_frames';
    case 'height':
    case 'width':
      return 'invalid_height_or_width';
    case 'samples':
      return 'invalid_samples';
    case 'sampler':
      return 'invalid_sampler';
    case 'mask_image':
      return 'invalid_mask_image';
    case 'webhook':
    case 'webhook_events_filter':
      return 'invalid_webhook';
    case 'loras':
      return 'invalid_lora';
    default:
      return 'bad_request';
  }
}
