/**
 * OpenAI's Images API as sdq takes it (POST /v1/images/generations, GET /v1/models): the request fields
 * of OpenAI's API reference, checked as strictly as Stability's (an unknown field is refused, as OpenAI
 * refuses it), and the error body OpenAI clients read.
 */
import { z } from 'zod';

/** The sizes OpenAI's image models take: each maps onto the engine's size of the same shape. */
export const OPENAI_SIZES = ['256x256', '512x512', '1024x1024', '1792x1024', '1024x1792', '1536x1024', '1024x1536'] as const;

export const OpenAIImageGenerationRequest = z
  .object({
    /** An OpenAI model name the operator maps (OPENAI_MODELS; dall-e-2 by default) or an engine id. */
    model: z.string().min(1).max(128).optional(),
    prompt: z.string().min(1).max(4000),
    n: z.number().int().min(1).max(10).default(1),
    /** WxH: one of OPENAI_SIZES, or a size the engine takes as it is; `auto` or unset = the engine's native size. */
    size: z.string().max(32).optional(),
    /** Unset: `url` for the dall-e names, `b64_json` for gpt-image-* (whose API answers nothing else). */
    response_format: z.enum(['url', 'b64_json']).optional(),
    /** gpt-image-1's: the images' format (png by default). */
    output_format: z.enum(['png', 'jpeg', 'webp']).optional(),
    /** gpt-image-1's: accepted; sdq encodes jpeg and webp at its own quality. */
    output_compression: z.number().int().min(0).max(100).optional(),
    /** gpt-image-1's: `opaque` and `auto` (sdq's engines draw opaque images; `transparent` is refused in the route). */
    background: z.enum(['transparent', 'opaque', 'auto']).optional(),
    /** gpt-image-1's: accepted; sdq has no moderation model. */
    moderation: z.enum(['low', 'auto']).optional(),
    /** hd / high: 50 steps; low: 15; standard, medium, auto: the engine's default. */
    quality: z.enum(['standard', 'hd', 'low', 'medium', 'high', 'auto']).optional(),
    /** Accepted; sdq's engines have no such setting, so it changes nothing. */
    style: z.enum(['vivid', 'natural']).optional(),
    /** Accepted; not used otherwise. */
    user: z.string().max(256).optional(),
    /** sdq's addition (OpenAI has none): the seed, 0 or unset = random. */
    seed: z.number().int().min(0).max(4294967295).optional(),
  })
  .strict();

/** POST /v1/images/edits (multipart): the image and its mask are files; the rest are fields. */
export const OpenAIImageEditRequest = OpenAIImageGenerationRequest.omit({ style: true, moderation: true });

/** POST /v1/images/variations (multipart): the image alone, no prompt. */
export const OpenAIImageVariationRequest = OpenAIImageGenerationRequest.omit({ prompt: true, style: true, quality: true, output_format: true, output_compression: true, background: true, moderation: true });

export const OpenAIImage = z.object({ url: z.string().optional(), b64_json: z.string().optional(), revised_prompt: z.string() });
/** gpt-image-1's response fields (background, output_format, quality, size) are answered for every model. */
export const OpenAIImagesResponse = z.object({
  created: z.number().int(),
  data: z.array(OpenAIImage),
  background: z.enum(['opaque']),
  output_format: z.enum(['png', 'jpeg', 'webp']),
  quality: z.string(),
  size: z.string(),
});

/** `{error: {message, type, param, code}}`: code is sdq's error name, param the field it names (or null). */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}
