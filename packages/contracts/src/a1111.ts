/**
 * AUTOMATIC1111's web UI API (`/sdapi/v1`) as sdq takes it: the fields of its
 * StableDiffusionTxt2ImgProcessingAPI model that sdq uses, checked strictly; fields A1111 has and sdq
 * cannot honour are accepted and ignored (docs/dialects.md lists them), as A1111's own model ignores unknown ones.
 */
import { z } from 'zod';

/** A1111's sampler names -> sdq's samplers. */
export const A1111_SAMPLERS: Readonly<Record<string, string>> = Object.freeze({
  'Euler a': 'K_EULER_ANCESTRAL',
  Euler: 'K_EULER',
  LMS: 'K_LMS',
  Heun: 'K_HEUN',
  DPM2: 'K_DPM_2',
  'DPM2 a': 'K_DPM_2_ANCESTRAL',
  'DPM++ 2S a': 'K_DPMPP_2S_ANCESTRAL',
  'DPM++ 2M': 'K_DPMPP_2M',
  'DPM++ 2M Karras': 'K_DPMPP_2M_KARRAS',
  'DPM++ SDE': 'K_DPMPP_SDE',
  DDIM: 'DDIM',
  PLMS: 'PNDM',
  LCM: 'LCM',
});

/** A1111's schedulers (noise schedules); "Karras" turns DPM++ 2M into DPM++ 2M Karras, the rest follow the sampler. */
export const A1111_SCHEDULERS = ['Automatic', 'Uniform', 'Karras', 'Exponential', 'SGM Uniform'] as const;

/**
 * A1111's override_settings: a setting name to its value. sdq reads sd_model_checkpoint and ignores the
 * rest, but bounds them all, so no field of a request is unbounded text.
 */
const OverrideScalar = z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]);
const OverrideValue = z.union([
  OverrideScalar,
  z.array(OverrideScalar).max(64),
  z.record(z.string().max(128), OverrideScalar).refine((o) => Object.keys(o).length <= 64, { message: 'must hold at most 64 entries' }),
]);
export const A1111OverrideSettings = z
  .record(z.string().min(1).max(128), OverrideValue)
  .refine((settings) => Object.keys(settings).length <= 64, { message: 'must hold at most 64 settings' });

const generation = {
  prompt: z.string().max(10_000).default(''),
  negative_prompt: z.string().max(10_000).default(''),
  /** -1 (default) = random. */
  seed: z.number().int().min(-1).max(4294967295).default(-1),
  /** Subseeds (variation seeds) are accepted and not used: sdq has none. */
  subseed: z.number().int().min(-1).max(4294967295).default(-1),
  subseed_strength: z.number().min(0).max(1).default(0),
  sampler_name: z.string().max(64).optional(),
  /** Legacy name of sampler_name. */
  sampler_index: z.string().max(64).optional(),
  scheduler: z.enum(A1111_SCHEDULERS).optional(),
  batch_size: z.number().int().min(1).max(10).default(1),
  n_iter: z.number().int().min(1).max(10).default(1),
  steps: z.number().int().min(1).max(150).default(50),
  cfg_scale: z.number().min(0).max(30).default(7),
  /** Unset = the engine's native size (A1111's 512 is SD 1.5's). */
  width: z.number().int().min(64).max(4096).optional(),
  height: z.number().int().min(64).max(4096).optional(),
  /** `sd_model_checkpoint` (an engine id or alias) picks the engine for this request; other settings are ignored. */
  override_settings: A1111OverrideSettings.optional(),
  override_settings_restore_afterwards: z.boolean().default(true),
  send_images: z.boolean().default(true),
  /** Accepted; sdq keeps every result in its storage anyway. */
  save_images: z.boolean().default(false),
};

export const A1111Txt2ImgRequest = z.object(generation);

/** img2img: the txt2img fields and the init image, its denoising strength, and the mask. */
export const A1111Img2ImgRequest = z.object({
  ...generation,
  /** Base64 images (a `data:image/...;base64,` prefix is allowed); the first is used. */
  init_images: z.array(z.string().max(48_000_000)).min(1).max(4),
  /** How much the image changes: 0 keeps it, 1 ignores it. */
  denoising_strength: z.number().min(0).max(1).default(0.75),
  /** Base64 mask: white = repaint (with inpainting_mask_invert 1, black = repaint). */
  mask: z.string().max(48_000_000).optional(),
  /** Pixels of Gaussian blur on the mask's edge. */
  mask_blur: z.number().int().min(0).max(64).default(4),
  inpainting_mask_invert: z.union([z.literal(0), z.literal(1)]).default(0),
  /** Accepted: sdq always starts the masked area from the original (A1111's 1, "original"). */
  inpainting_fill: z.number().int().min(0).max(3).default(0),
  /** Accepted: sdq repaints at the whole image's size (A1111's false). */
  inpaint_full_res: z.union([z.boolean(), z.literal(0), z.literal(1)]).default(true),
  inpaint_full_res_padding: z.number().int().min(0).max(256).default(32),
  /** Accepted: sdq resizes the image to width x height (A1111's 0, "just resize"). */
  resize_mode: z.number().int().min(0).max(3).default(0),
  include_init_images: z.boolean().default(false),
});

/** extra-single-image: an upscale by the upscaler engines (face restoration fields accepted, not used). */
export const A1111ExtraSingleImageRequest = z.object({
  image: z.string().min(1).max(48_000_000),
  /** 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h. */
  resize_mode: z.union([z.literal(0), z.literal(1)]).default(0),
  upscaling_resize: z.number().min(1).max(8).default(2),
  upscaling_resize_w: z.number().int().min(1).max(16_384).default(512),
  upscaling_resize_h: z.number().int().min(1).max(16_384).default(512),
  upscaling_crop: z.boolean().default(true),
  /** An upscale engine id; "None" or unset = the first one here. */
  upscaler_1: z.string().max(128).default('None'),
  upscaler_2: z.string().max(128).default('None'),
  extras_upscaler_2_visibility: z.number().min(0).max(1).default(0),
  gfpgan_visibility: z.number().min(0).max(1).default(0),
  codeformer_visibility: z.number().min(0).max(1).default(0),
  codeformer_weight: z.number().min(0).max(1).default(0),
  upscale_first: z.boolean().default(false),
  show_extras_results: z.boolean().default(true),
});

export const A1111PngInfoRequest = z.object({ image: z.string().min(1).max(48_000_000) });

/** A key of an infotext's settings line, as A1111's re_param accepts one: a word character, then words, spaces, - and /. */
const INFOTEXT_KEY = /^\w[\w \-/]*$/;

/**
 * The `Key: value` pairs of an infotext's settings line, read in one pass: a key runs to its colon, a
 * value to the next comma, or is a double-quoted string (with backslash escapes). A scanner rather than
 * A1111's re_param: that regex backtracks on client text (its `\s*` and `[\w ]+` share the spaces), and a
 * few thousand spaces held the event loop for seconds.
 */
export function infotextPairs(line: string): [string, string][] {
  const pairs: [string, string][] = [];
  const n = line.length;
  let i = 0;
  while (i < n) {
    let colon = i;
    while (colon < n && line[colon] !== ':' && line[colon] !== ',') colon++;
    if (colon >= n || line[colon] === ',') {
      i = colon + 1;
      continue;
    }
    const key = line.slice(i, colon).trim();
    let start = colon + 1;
    while (start < n && (line[start] === ' ' || line[start] === '\t')) start++;
    let end = -1;
    if (line[start] === '"') {
      let q = start + 1;
      while (q < n && line[q] !== '"') q += line[q] === '\\' ? 2 : 1;
      if (q < n) end = q + 1;
    }
    let value: string;
    if (end > 0) {
      value = line.slice(start, end);
      i = end;
      while (i < n && line[i] !== ',') i++;
      i++;
    } else {
      const comma = line.indexOf(',', start);
      const stop = comma < 0 ? n : comma;
      value = line.slice(start, stop).trim();
      i = stop + 1;
    }
    if (key.length <= 200 && INFOTEXT_KEY.test(key)) pairs.push([key, value]);
  }
  return pairs;
}

/**
 * An infotext (the PNG `parameters` text) as A1111's parse_generation_parameters reads it: the prompt
 * lines, `Negative prompt: ...`, and a last line of `Key: value` pairs; Size becomes Size-1 and Size-2.
 * Values stay text, as A1111 gives them. Linear in the text's length.
 */
export function parseInfotext(text: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  const lines = text.trim().split('\n');
  const last = lines.length > 1 && lines[lines.length - 1].trimStart().startsWith('Steps: ') ? lines.pop()! : '';
  const negativeAt = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const prompt = negativeAt < 0 ? lines : lines.slice(0, negativeAt);
  out.Prompt = prompt.join('\n').trim();
  out['Negative prompt'] = negativeAt < 0 ? '' : lines.slice(negativeAt).join('\n').slice('Negative prompt:'.length).trim();
  for (const [key, value] of infotextPairs(last)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') continue;
    if (key === 'Size' && /^\d{1,6}x\d{1,6}$/.test(value)) [out['Size-1'], out['Size-2']] = value.split('x');
    else out[key] = value;
  }
  return out;
}

/**
 * A checkpoint name as A1111 clients send it: an engine id or alias, or A1111's title with a
 * ` [hash]` suffix, which is dropped. Linear: no regex over the client's text.
 */
export function checkpointId(name: string): string {
  const trimmed = name.trimEnd();
  if (!trimmed.endsWith(']')) return name;
  const open = trimmed.lastIndexOf('[');
  const hash = trimmed.slice(open + 1, -1);
  if (open < 0 || !hash || !/^[0-9a-f]+$/i.test(hash)) return name;
  return trimmed.slice(0, open).trimEnd();
}

export const A1111OptionsUpdate = z.object({ sd_model_checkpoint: z.string().min(1).max(128).optional() });

/** AUTOMATIC1111's error answer `{error, detail, body, errors}`: `error` is sdq's catalogue name, `detail` the message. */
export interface A1111ErrorBody {
  error: string;
  detail: string;
  body: string;
  errors: string;
}
