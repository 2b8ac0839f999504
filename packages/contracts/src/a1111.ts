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

/** A1111's sampler aliases (sd_samplers_kdiffusion.py, sd_samplers_timesteps.py, sd_samplers_lcm.py), matched case-insensitively. */
const A1111_SAMPLER_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  k_euler_a: 'Euler a',
  k_euler_ancestral: 'Euler a',
  k_euler: 'Euler',
  k_lms: 'LMS',
  k_heun: 'Heun',
  k_dpm_2: 'DPM2',
  k_dpm_2_a: 'DPM2 a',
  k_dpmpp_2s_a: 'DPM++ 2S a',
  k_dpmpp_2m: 'DPM++ 2M',
  k_dpmpp_2m_ka: 'DPM++ 2M Karras',
  k_dpmpp_sde: 'DPM++ SDE',
  ddim: 'DDIM',
  plms: 'PLMS',
  k_lcm: 'LCM',
});

/** A1111's schedulers (noise schedules); "Karras" turns DPM++ 2M into DPM++ 2M Karras, the rest follow the sampler. */
export const A1111_SCHEDULERS = ['Automatic', 'Uniform', 'Karras', 'Exponential', 'SGM Uniform'] as const;

/**
 * Every scheduler A1111 1.10 knows, name -> label (sd_schedulers.py): a client may send either, and a
 * sampler name may end in either (`DPM++ 2M Karras`). sdq runs the five of A1111_SCHEDULERS; the rest
 * fall back to Automatic, which the answer's info says.
 */
const A1111_SCHEDULER_LABELS: Readonly<Record<string, string>> = Object.freeze({
  automatic: 'Automatic',
  uniform: 'Uniform',
  karras: 'Karras',
  exponential: 'Exponential',
  polyexponential: 'Polyexponential',
  sgm_uniform: 'SGM Uniform',
  kl_optimal: 'KL Optimal',
  align_your_steps: 'Align Your Steps',
  simple: 'Simple',
  normal: 'Normal',
  ddim: 'DDIM',
  beta: 'Beta',
});

/** A1111's aliases of one of its sampler names, as GET /sdapi/v1/samplers lists them. */
export function a1111SamplerAliases(name: string): string[] {
  return Object.entries(A1111_SAMPLER_ALIASES).filter(([, n]) => n === name).map(([alias]) => alias);
}

/** A scheduler by name, label or alias (SGMUniform), as A1111's schedulers_map finds it; undefined when none. */
function schedulerLabel(text: string): string | undefined {
  if (Object.hasOwn(A1111_SCHEDULER_LABELS, text)) return A1111_SCHEDULER_LABELS[text];
  if (Object.values(A1111_SCHEDULER_LABELS).includes(text)) return text;
  return text === 'SGMUniform' ? 'SGM Uniform' : undefined;
}

/**
 * An A1111 sampler and scheduler as A1111 1.10 resolves them (get_sampler_and_scheduler): the sampler by
 * its name or an alias, a scheduler named at the end of the sampler name taken off it, the scheduler by
 * name or label; an empty or unknown scheduler is Automatic. `sampler` is A1111's name (undefined when
 * none was given), `unknown` a name A1111 has not got (the caller refuses it), `note` what ran instead of
 * what was asked.
 */
export function resolveA1111Sampler(name: string | undefined, scheduler: string | undefined): { sampler?: string; unknown?: string; scheduler: string; note?: string } {
  let label = scheduler ? schedulerLabel(scheduler) : undefined;
  let note = scheduler && !label ? `scheduler ${JSON.stringify(scheduler)} is not one A1111 knows: Automatic ran` : undefined;
  let rest = name?.trim();
  if (rest && !Object.keys(A1111_SAMPLERS).some((n) => n.toLowerCase() === rest!.toLowerCase())) {
    for (const [key, value] of Object.entries(A1111_SCHEDULER_LABELS)) {
      const suffix = [value, key].find((s) => rest!.endsWith(` ${s}`));
      if (suffix) {
        rest = rest.slice(0, -(suffix.length + 1));
        label = value;
        break;
      }
    }
  }
  const given = rest === undefined || rest === '' ? undefined : rest;
  // A1111's samplers_map: its names and aliases, lower-cased
  const sampler = given === undefined ? undefined : Object.hasOwn(A1111_SAMPLERS, given) ? given : (A1111_SAMPLER_ALIASES[given.toLowerCase()] ?? Object.keys(A1111_SAMPLERS).find((n) => n.toLowerCase() === given.toLowerCase()));
  label ??= 'Automatic';
  if (!(A1111_SCHEDULERS as readonly string[]).includes(label)) {
    note = `scheduler ${label} is not one sdq runs (${A1111_SCHEDULERS.join(', ')}): Automatic ran`;
    label = 'Automatic';
  }
  return { ...(sampler ? { sampler } : {}), ...(given !== undefined && !sampler ? { unknown: given } : {}), scheduler: label, ...(note ? { note } : {}) };
}

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
  /** A scheduler's name or label (A1111 takes both); empty or unknown runs Automatic, as A1111 does. */
  scheduler: z.string().max(64).optional(),
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

/** Hires fix, txt2img's second pass (A1111's StableDiffusionProcessingTxt2Img fields). */
const hiresFields = {
  enable_hr: z.boolean().default(false),
  /** The target is width x height times this, unless hr_resize_x / hr_resize_y give it. */
  hr_scale: z.number().min(1).max(8).default(2),
  hr_resize_x: z.number().int().min(0).max(16_384).default(0),
  hr_resize_y: z.number().int().min(0).max(16_384).default(0),
  /** A latent mode (GET latent-upscale-modes), Lanczos, Nearest, or an upscaler (GET upscalers). Default Latent. */
  hr_upscaler: z.string().max(128).nullable().optional(),
  /** 0: the first pass's steps. */
  hr_second_pass_steps: z.number().int().min(0).max(150).default(0),
  /** How much the second pass changes the upscaled image. */
  denoising_strength: z.number().min(0).max(1).nullable().optional(),
  /** "" or "Use same sampler": the first pass's. */
  hr_sampler_name: z.string().max(64).nullable().optional(),
  hr_scheduler: z.string().max(64).nullable().optional(),
  /** "": the first pass's prompt. */
  hr_prompt: z.string().max(10_000).default(''),
  hr_negative_prompt: z.string().max(10_000).default(''),
  /** Accepted; A1111 itself ignores them since 1.0. */
  firstphase_width: z.number().int().min(0).max(16_384).optional(),
  firstphase_height: z.number().int().min(0).max(16_384).optional(),
};

export const A1111Txt2ImgRequest = z.object({ ...generation, ...hiresFields });
/** What txt2img and img2img share. */
export type A1111Generation = z.infer<ReturnType<typeof z.object<typeof generation>>>;

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
