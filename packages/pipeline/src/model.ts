import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OnnxClock, OnnxModel } from './backends/onnx';
import { PipelineError } from './errors';
import { blockCount, folderGeometry, readJsonFile } from './folder';
import { ClipTokenizer, TokenizerFileError, type TokenizerOutput } from './tokenizer/clip-tokenizer';
import { T5Tokenizer } from './tokenizer/t5-tokenizer';
import type { RuntimeOptions } from './types';

/** What a text encoder's tokenizer does: ids padded to a fixed window (CLIP BPE, or SD3's T5). */
export interface TextTokenizer {
  readonly maxLength: number;
  encode(text: string): TokenizerOutput;
}

/** One text encoder and the tokenizer that feeds it (`tokenizer` + `text_encoder`, `tokenizer_2` + `text_encoder_2`, ...). */
export interface TextEncoderPair {
  tokenizer: TextTokenizer;
  encoder: OnnxModel;
  /** The suffix of its folders: '', '_2', '_3'. */
  suffix: string;
}

/** How a family's folder is laid out, beyond what every family has. */
export interface ModelLayout {
  /** Suffixes of the tokenizer / text_encoder folders, in the family's order. */
  encoders: readonly string[];
  /** Encoders the folder may leave out (SD3 without T5). */
  optionalEncoders?: readonly string[];
  /** Encoders whose tokenizer is T5's (tokenizer.json) rather than CLIP's BPE. */
  t5Encoders?: readonly string[];
  /** The denoiser's folder: `unet`, or SD3's `transformer`. */
  denoiser?: 'unet' | 'transformer';
  /** The T5 window (diffusers' max_sequence_length); default: the tokenizer config's model_max_length. */
  maxSequenceLength?: number;
}

/**
 * Everything a diffusers ONNX folder provides, read from the folder itself: the parts every family has
 * (UNet, VAE, scheduler) and its text encoders, in the order the family names them.
 */
export interface DiffusionModel {
  dir: string;
  /** model_index.json. */
  index: Record<string, unknown>;
  /** The encoders the folder has, in the family's order (an optional one left out is not here). */
  encoders: TextEncoderPair[];
  /** The denoiser: the UNet, or SD3's transformer. */
  unet: OnnxModel;
  /** Its config.json (transformer: joint_attention_dim, patch_size, ...). */
  denoiserConfig?: Record<string, unknown>;
  vaeEncoder?: OnnxModel;
  vaeDecoder: OnnxModel;
  schedulerConfig: Record<string, unknown>;
  /** The VAE config's scaling_factor, else 0.18215 (diffusers' AutoencoderKL default). */
  scalingFactor: number;
  /** The VAE config's shift_factor, else 0: latents = (z - shift) * scale. */
  shiftFactor: number;
  /** Pixels per latent cell: 2^(len(vae block_out_channels) - 1). */
  vaeScaleFactor: number;
  /** Latent sizes must be multiples of this for the UNet's down-sampling: 2^(len(unet block_out_channels) - 1). */
  unetMultiple: number;
  /** Channels of a latent: the VAE's latent_channels, else the graphs' static channel dimension. */
  latentChannels: number;
  nativeWidth: number;
  nativeHeight: number;
  clock: OnnxClock;
}

/** SD 1.x/2.x's model: one text encoder. Kept for the code and tests that name its parts. */
export interface StableDiffusionModel extends DiffusionModel {
  tokenizer: ClipTokenizer;
  textEncoder: OnnxModel;
}

const DEFAULT_SCALING_FACTOR = 0.18215;

/**
 * Loads a folder in the diffusers ONNX layout with the text encoders a family names (`['']` for SD's one
 * `tokenizer` + `text_encoder`, `['', '_2']` for SDXL's two). Files are checked before any graph is
 * loaded so that a broken folder fails fast with one error naming the file.
 */
export async function loadDiffusionModel(dir: string, options: RuntimeOptions = {}, layoutOrSuffixes: ModelLayout | readonly string[] = ['']): Promise<DiffusionModel> {
  const layout: ModelLayout = Array.isArray(layoutOrSuffixes) ? { encoders: layoutOrSuffixes as readonly string[] } : (layoutOrSuffixes as ModelLayout);
  if (!existsSync(dir)) throw new PipelineError('invalid_model', `model folder not found: ${dir}`);
  const index = readJsonFile(join(dir, 'model_index.json'), true);
  const denoiser = layout.denoiser ?? 'unet';
  const graph = (name: string) => join(dir, name, 'model.onnx');
  // An optional encoder counts only when the folder has it whole (SD3 is often shipped without T5).
  const encoderSuffixes = layout.encoders.filter(
    (s) => !layout.optionalEncoders?.includes(s) || (index[`text_encoder${s}`] != null && existsSync(graph(`text_encoder${s}`))),
  );
  const encoderNames = encoderSuffixes.map((s) => `text_encoder${s}`);
  for (const component of [...encoderSuffixes.map((s) => `tokenizer${s}`), ...encoderNames, denoiser, 'scheduler']) {
    if (!(component in index)) {
      throw new PipelineError('invalid_model', `malformed ${join(dir, 'model_index.json')}: no "${component}" component`);
    }
  }
  for (const name of [...encoderNames, denoiser, 'vae_decoder']) {
    if (!existsSync(graph(name))) throw new PipelineError('invalid_model', `model file missing: ${graph(name)}`);
  }
  const schedulerConfig = readJsonFile(join(dir, 'scheduler', 'scheduler_config.json'), true);
  if (typeof schedulerConfig._class_name !== 'string') {
    throw new PipelineError('invalid_model', `malformed ${join(dir, 'scheduler', 'scheduler_config.json')}: no _class_name`);
  }
  // the sizes the API describes this folder by (folder.ts), so the two cannot disagree
  const geometry = folderGeometry(dir, index, denoiser === 'transformer' ? 'transformer' : 'unet');
  const { vaeConfig, vaeConfigPath, vaeScaleFactor, denoiserConfigPath: unetConfigPath, denoiserConfig: unetConfig } = geometry;
  const scalingFactor = typeof vaeConfig?.scaling_factor === 'number' ? vaeConfig.scaling_factor : DEFAULT_SCALING_FACTOR;
  const shiftFactor = typeof vaeConfig?.shift_factor === 'number' ? vaeConfig.shift_factor : 0;
  // A UNet down-samples 2^(blocks - 1) times; a transformer cuts latents into patch_size patches.
  const unetMultiple =
    denoiser === 'transformer' ? (typeof unetConfig?.patch_size === 'number' ? unetConfig.patch_size : 2) : 2 ** (blockCount(unetConfig, unetConfigPath, 4) - 1);

  const tokenizers: TextTokenizer[] = [];
  for (const suffix of encoderSuffixes) {
    try {
      const folder = join(dir, `tokenizer${suffix}`);
      tokenizers.push(layout.t5Encoders?.includes(suffix) ? T5Tokenizer.fromFolder(folder, layout.maxSequenceLength) : await ClipTokenizer.fromFolder(folder));
    } catch (err) {
      if (err instanceof TokenizerFileError) throw new PipelineError('invalid_model', err.message);
      throw err;
    }
  }

  const clock = new OnnxClock();
  const first = await OnnxModel.load(graph(encoderNames[0]), options, clock);
  // The other graphs start at the provider that worked, so a fallback warns once per model, not per graph.
  const providers = options.providers?.length ? options.providers : undefined;
  const rest = { ...options, providers: providers?.slice(Math.max(0, providers.indexOf(first.provider))) };
  const encoders: TextEncoderPair[] = [{ tokenizer: tokenizers[0], encoder: first, suffix: encoderSuffixes[0] }];
  for (let i = 1; i < encoderNames.length; i++) {
    encoders.push({ tokenizer: tokenizers[i], encoder: await OnnxModel.load(graph(encoderNames[i]), rest, clock), suffix: encoderSuffixes[i] });
  }
  const unet = await OnnxModel.load(graph(denoiser), rest, clock);
  const vaeDecoder = await OnnxModel.load(graph('vae_decoder'), rest, clock);
  const vaeEncoder = existsSync(graph('vae_encoder')) ? await OnnxModel.load(graph('vae_encoder'), rest, clock) : undefined;

  // A graph exported at one fixed latent size runs only that size: it must be the size the folder is
  // described by (the API offers and defaults to it), or every request the API accepts would fail here.
  const sampleInput = (unet.input('sample') ?? unet.inputs[0])?.shape;
  const staticDim = (d: number | string | undefined) => (typeof d === 'number' && d > 0 ? d : undefined);
  const [fixedH, fixedW] = [staticDim(sampleInput?.[2]), staticDim(sampleInput?.[3])];
  if ((fixedH !== undefined && fixedH !== geometry.latentHeight) || (fixedW !== undefined && fixedW !== geometry.latentWidth)) {
    const said = geometry.sampleSizeGiven ? `its sample_size says ${geometry.latentHeight}x${geometry.latentWidth}` : `it has no sample_size, so ${geometry.latentHeight}x${geometry.latentWidth} is assumed`;
    throw new PipelineError(
      'invalid_model',
      `${graph(denoiser)} takes only ${fixedH ?? 'any'}x${fixedW ?? 'any'} latents (a fixed-shape export), but ${unetConfigPath}: ${said}; set sample_size to [${fixedH ?? geometry.latentHeight}, ${fixedW ?? geometry.latentWidth}]`,
    );
  }
  const latentChannels =
    (typeof vaeConfig?.latent_channels === 'number' ? vaeConfig.latent_channels : undefined) ??
    staticDim(vaeDecoder.inputs[0]?.shape[1]) ??
    (typeof unetConfig?.out_channels === 'number' ? unetConfig.out_channels : undefined) ??
    staticDim(unet.outputs[0]?.shape[1]);
  if (!latentChannels) {
    throw new PipelineError('invalid_model', `${vaeConfigPath}: no latent_channels, and neither the VAE decoder's nor the UNet's graph gives a static channel count`);
  }

  return {
    dir,
    index,
    encoders,
    unet,
    denoiserConfig: unetConfig,
    vaeEncoder,
    vaeDecoder,
    schedulerConfig,
    scalingFactor,
    shiftFactor,
    vaeScaleFactor,
    unetMultiple,
    latentChannels,
    nativeWidth: geometry.nativeWidth,
    nativeHeight: geometry.nativeHeight,
    clock,
  };
}

/** An SD 1.x / 2.x / Turbo folder: one tokenizer and text encoder. */
export async function loadStableDiffusionModel(dir: string, options: RuntimeOptions = {}): Promise<StableDiffusionModel> {
  const model = await loadDiffusionModel(dir, options, ['']);
  return { ...model, tokenizer: model.encoders[0].tokenizer as ClipTokenizer, textEncoder: model.encoders[0].encoder };
}
