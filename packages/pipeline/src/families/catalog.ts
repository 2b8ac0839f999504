/**
 * The diffusion families sdq knows, read from JSON alone (no onnxruntime), so the API and the worker
 * describe an engine from the same table: which model_index.json `_class_name`s a family answers to,
 * its text encoders, the samplers it can use (diffusers' `_compatibles`), its modes and size rules.
 */
import { SAMPLERS, type SamplerName } from '../schedulers/samplers';

export type FamilyId = 'stable-diffusion' | 'stable-diffusion-xl' | 'stable-diffusion-3';
export type Mode = 'text-to-image' | 'image-to-image' | 'masking' | 'upscale';

/**
 * Request inputs only some families take: `prompt_2` (the second text encoder's own prompt: SDXL, SD3),
 * `prompt_3` (SD3's T5), `micro_conditioning` (SDXL's original size and crop). A dialect asks the
 * engine's description (`inputs`) whether to pass one on, never the family's id.
 */
export type FamilyInput = 'prompt_2' | 'prompt_3' | 'micro_conditioning';

export interface FamilyDescription {
  id: FamilyId;
  /** For messages and listings. */
  name: string;
  /** model_index.json `_class_name`s of this family (diffusers' and Optimum's). */
  classNames: readonly string[];
  /** Suffixes of its tokenizer / text_encoder folders: '' = tokenizer + text_encoder, '_2' = tokenizer_2 + text_encoder_2. */
  encoderSuffixes: readonly string[];
  /** The samplers it can use; any other is a 400 that lists these, never a silent swap. */
  samplers: readonly SamplerName[];
  /** The inputs beyond SD's that it takes (FamilyInput). */
  inputs: readonly FamilyInput[];
  /** Output sides are multiples of this. */
  sizeStep: number;
  /** Sizes the family was trained on for a native side, where it has a fixed list (SDXL at 1024). */
  fixedSizes?: (nativeSide: number) => readonly string[] | undefined;
  /** Its reference settings where they differ from sdq's (30 steps, cfg 7, the folder's scheduler). */
  defaults?: { steps?: number; cfgScale?: number; sampler?: SamplerName };
  /** The price table entry of an engine of this family that has none of its own. */
  defaultPrice?: string;
  /** Folder layout beyond SD's: optional and T5 encoders, the denoiser's folder. */
  optionalEncoders?: readonly string[];
  t5Encoders?: readonly string[];
  denoiser?: 'unet' | 'transformer';
}

/** The samplers of the epsilon / v-prediction families: every one but the flow sampler. */
const DIFFUSION_SAMPLERS = SAMPLERS.filter((s) => s !== 'FLOW_MATCH_EULER');

/** Stability's SDXL 1.0 sizes (its v1 API refuses any other on the SDXL engines). */
export const SDXL_SIZES = ['1024x1024', '1152x896', '896x1152', '1216x832', '832x1216', '1344x768', '768x1344', '1536x640', '640x1536'] as const;

export const FAMILIES: readonly FamilyDescription[] = [
  {
    id: 'stable-diffusion',
    name: 'Stable Diffusion 1.x/2.x',
    classNames: ['StableDiffusionPipeline', 'OnnxStableDiffusionPipeline', 'ORTStableDiffusionPipeline'],
    encoderSuffixes: [''],
    samplers: DIFFUSION_SAMPLERS,
    inputs: [],
    sizeStep: 64,
  },
  {
    id: 'stable-diffusion-xl',
    name: 'Stable Diffusion XL',
    classNames: ['StableDiffusionXLPipeline', 'ORTStableDiffusionXLPipeline', 'OnnxStableDiffusionXLPipeline'],
    encoderSuffixes: ['', '_2'],
    samplers: DIFFUSION_SAMPLERS,
    inputs: ['prompt_2', 'micro_conditioning'],
    sizeStep: 64,
    fixedSizes: (side) => (side === 1024 ? SDXL_SIZES : undefined),
  },
  {
    id: 'stable-diffusion-3',
    name: 'Stable Diffusion 3',
    classNames: ['StableDiffusion3Pipeline', 'ORTStableDiffusion3Pipeline', 'OnnxStableDiffusion3Pipeline'],
    encoderSuffixes: ['', '_2', '_3'],
    optionalEncoders: ['_3'],
    t5Encoders: ['_3'],
    denoiser: 'transformer',
    samplers: ['FLOW_MATCH_EULER'],
    // no micro-conditioning: SD3's transformer has no original-size or crop input
    inputs: ['prompt_2', 'prompt_3'],
    sizeStep: 64,
    // SD3's reference settings; Stability prices it per image.
    defaults: { steps: 28, cfgScale: 7, sampler: 'FLOW_MATCH_EULER' },
    defaultPrice: 'stable-diffusion-3-medium',
  },
];

/** The family of a model_index.json `_class_name`, or undefined. */
export function familyOf(className: unknown): FamilyDescription | undefined {
  return FAMILIES.find((f) => typeof className === 'string' && f.classNames.includes(className));
}

export const KNOWN_CLASS_NAMES = FAMILIES.flatMap((f) => f.classNames);
