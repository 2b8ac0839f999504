/**
 * Stability's v2beta "Stable Image" API as sdq serves it: multipart request fields, the services and
 * models, the aspect ratios, and which calls are left unsupported (501). Field names, ranges and
 * defaults are Stability's; the API validates with these and /openapi.json is built from them.
 */
import { z } from 'zod';
import { LorasField, STYLE_PRESET_NAMES, webhookFields } from './requests';

/** Stability's nine aspect ratios, as width:height. */
export const ASPECT_RATIOS = ['16:9', '1:1', '21:9', '2:3', '3:2', '4:5', '5:4', '9:16', '9:21'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

/** The SD3 models of /generate/sd3. */
export const SD3_MODELS = ['sd3.5-large', 'sd3.5-large-turbo', 'sd3.5-medium', 'sd3.5-flash'] as const;
/** The older SD3 names, served by the SD 3.5 model Stability reroutes each to. */
export const SD3_MODEL_REROUTES: Readonly<Record<string, (typeof SD3_MODELS)[number]>> = Object.freeze(
  Object.assign(Object.create(null), {
    sd3: 'sd3.5-large',
    'sd3-large': 'sd3.5-large',
    'sd3-turbo': 'sd3.5-large-turbo',
    'sd3-large-turbo': 'sd3.5-large-turbo',
    'sd3-medium': 'sd3.5-medium',
  }),
);

/**
 * The v2beta services an operator maps onto engines (V2BETA_ENGINES), each also a price table entry
 * `v2beta/<service>`: the generate services and SD3 models, the upscalers, and the edits.
 */
export const V2BETA_SERVICES = ['core', 'ultra', ...SD3_MODELS, 'upscale-fast', 'upscale-conservative', 'upscale-creative', 'inpaint', 'outpaint', 'erase'] as const;
export type V2BetaService = (typeof V2BETA_SERVICES)[number];

/** Stability's largest seed on v2beta (0 = a random one). */
export const V2BETA_MAX_SEED = 4_294_967_294;

const prompt = z.string().trim().min(1, 'must not be empty').max(10_000, 'must be at most 10000 characters');
const seed = z.number().int('must be a whole number').min(0).max(V2BETA_MAX_SEED).default(0).describe('0 (default) = a random seed; the seed used is in the `seed` header / field.');
const outputFormat = z.enum(['png', 'jpeg', 'webp']).default('png');
const stylePreset = z.enum(STYLE_PRESET_NAMES).optional().describe("The engine's style text for this preset, as on v1 (the tiny engines add nothing).");
const negativePrompt = z.string().max(10_000, 'must be at most 10000 characters').optional();
const cfgScale = z.number().min(1).max(10).optional().describe("How strictly the image follows the prompt, 1-10. Default: the engine's.");

/** /generate/core and /generate/ultra: text-to-image; ultra also takes an image with a strength. */
export const V2GenerateRequest = z.object({
  ...webhookFields,
  loras: LorasField,
  prompt,
  negative_prompt: negativePrompt,
  aspect_ratio: z.enum(ASPECT_RATIOS).default('1:1').describe("Mapped onto the engine's allowed size of that shape nearest its native pixel count."),
  seed,
  output_format: outputFormat,
  style_preset: stylePreset,
  cfg_scale: cfgScale,
  strength: z.number().min(0).max(1).optional().describe('With `image`: 0 keeps the image, 1 ignores it.'),
});

/** /generate/sd3. */
export const V2Sd3Request = V2GenerateRequest.extend({
  model: z.enum([...SD3_MODELS, ...Object.keys(SD3_MODEL_REROUTES)] as [string, ...string[]]).default('sd3.5-large'),
  mode: z.enum(['text-to-image', 'image-to-image']).default('text-to-image'),
});

/** /upscale/fast. */
export const V2UpscaleFastRequest = z.object({ ...webhookFields, output_format: outputFormat });

const enhanceFields = {
  ...webhookFields,
  loras: LorasField,
  prompt,
  negative_prompt: negativePrompt,
  seed,
  output_format: outputFormat,
  style_preset: stylePreset,
};

/** /upscale/conservative: twice the size, the details sharpened with the prompt but hardly changed. */
export const V2ConservativeRequest = z.object({
  ...enhanceFields,
  creativity: z.number().min(0.2).max(0.5).default(0.35).describe('Each tile is denoised by half of this.'),
});

/** /upscale/creative (asynchronous): twice the size, repainted tile by tile with the prompt. */
export const V2CreativeRequest = z.object({
  ...enhanceFields,
  creativity: z.number().min(0.1).max(0.5).default(0.3).describe('How much of each tile is repainted (its denoise).'),
});

/** /edit/inpaint and /edit/erase. */
export const V2InpaintRequest = z.object({
  ...webhookFields,
  loras: LorasField,
  prompt: z.string().trim().max(10_000, 'must be at most 10000 characters').default(''),
  negative_prompt: negativePrompt,
  grow_mask: z.number().int('must be a whole number').min(0).max(100).default(5).describe('Pixels the mask grows outward, then blurs by, so the new area blends in.'),
  seed,
  output_format: outputFormat,
  style_preset: stylePreset,
});

const side = z.number().int('must be a whole number').min(0).max(2000).default(0);

/** /edit/outpaint: the canvas grows by left/right/up/down pixels and the new area is painted. */
export const V2OutpaintRequest = z.object({
  ...webhookFields,
  loras: LorasField,
  left: side,
  right: side,
  up: side,
  down: side,
  creativity: z.number().min(0).max(1).default(0.5).describe('How freely the new area is painted: 0 follows the stretched edges, 1 ignores them.'),
  prompt: z.string().trim().max(10_000, 'must be at most 10000 characters').default(''),
  negative_prompt: negativePrompt,
  seed,
  output_format: outputFormat,
  style_preset: stylePreset,
});

/**
 * Stability v2beta endpoints that need models sdq does not have: a 501 in Stability's error shape, so a
 * client knows the call is unsupported rather than broken.
 */
export const V2BETA_UNSUPPORTED = [
  '/v2beta/stable-image/edit/search-and-replace',
  '/v2beta/stable-image/edit/search-and-recolor',
  '/v2beta/stable-image/edit/remove-background',
  '/v2beta/stable-image/edit/replace-background-and-relight',
  '/v2beta/stable-image/control/sketch',
  '/v2beta/stable-image/control/structure',
  '/v2beta/stable-image/control/style',
  '/v2beta/stable-image/control/style-transfer',
  '/v2beta/image-to-video',
  '/v2beta/3d/stable-fast-3d',
  '/v2beta/3d/stable-point-aware-3d',
] as const;

