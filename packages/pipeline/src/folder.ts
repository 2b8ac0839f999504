/**
 * The one reader of a diffusers folder's JSON, for the API's description (`engines.ts`) and the worker's
 * load (`model.ts`) alike, so the two cannot disagree about an engine: the same files, the same errors
 * (a malformed file is an error in both, never silently a default), the same native size. No onnxruntime.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PipelineError } from './errors';

/**
 * The latent side assumed for a denoiser without `sample_size` (diffusers' 64: 512 px at factor 8). A
 * graph exported with a fixed other size must say so in its config.json; the worker refuses it otherwise.
 */
export const FALLBACK_LATENT_SIDE = 64;

export function readJsonFile(path: string, required: true): Record<string, unknown>;
export function readJsonFile(path: string, required: false): Record<string, unknown> | undefined;
export function readJsonFile(path: string, required: boolean): Record<string, unknown> | undefined {
  if (!existsSync(path)) {
    if (required) throw new PipelineError('invalid_model', `model file missing: ${path}`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new PipelineError('invalid_model', `malformed JSON in ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new PipelineError('invalid_model', `malformed ${path}: expected a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** len(block_out_channels) of a config, or `fallback` when it has none. */
export function blockCount(config: Record<string, unknown> | undefined, file: string, fallback: number): number {
  const blocks = config?.block_out_channels;
  if (blocks === undefined) return fallback;
  if (!Array.isArray(blocks) || blocks.length === 0) {
    throw new PipelineError('invalid_model', `malformed ${file}: block_out_channels must be a non-empty array`);
  }
  return blocks.length;
}

/** The sizes a folder's configs fix: what the API describes and the worker runs. */
export interface FolderGeometry {
  /** `unet`, or `transformer` (SD3): the folder model_index.json names. */
  denoiser: 'unet' | 'transformer';
  denoiserConfig: Record<string, unknown> | undefined;
  denoiserConfigPath: string;
  vaeConfig: Record<string, unknown> | undefined;
  vaeConfigPath: string;
  /** 2^(len(block_out_channels) - 1) of the VAE. */
  vaeScaleFactor: number;
  /** The native latent size: the denoiser's sample_size, else FALLBACK_LATENT_SIDE. */
  latentWidth: number;
  latentHeight: number;
  /** Whether sample_size said the latent size (false: the fallback). */
  sampleSizeGiven: boolean;
  /** Native output size = latent size x vaeScaleFactor. */
  nativeWidth: number;
  nativeHeight: number;
}

/**
 * The denoiser's and VAE's configs of a folder and the sizes they fix; throws for malformed files. The
 * denoiser is the one model_index.json names (`transformer` without `unet`: SD3) unless the family says.
 */
export function folderGeometry(dir: string, index: Record<string, unknown>, denoiser: 'unet' | 'transformer' = index.transformer != null && index.unet == null ? 'transformer' : 'unet'): FolderGeometry {
  const denoiserConfigPath = join(dir, denoiser, 'config.json');
  const denoiserConfig = readJsonFile(denoiserConfigPath, false);
  // the decoder's config, else the encoder's (a folder may carry only one)
  const decoderPath = join(dir, 'vae_decoder', 'config.json');
  const vaeConfigPath = existsSync(decoderPath) ? decoderPath : join(dir, 'vae_encoder', 'config.json');
  const vaeConfig = readJsonFile(vaeConfigPath, false);
  const vaeScaleFactor = 2 ** (blockCount(vaeConfig, vaeConfigPath, 4) - 1);
  const size = denoiserConfig?.sample_size;
  let latent: [number, number] | undefined;
  if (typeof size === 'number') latent = [size, size];
  else if (Array.isArray(size) && size.length === 2) latent = [Number(size[0]), Number(size[1])];
  else if (size !== undefined) throw new PipelineError('invalid_model', `malformed ${denoiserConfigPath}: sample_size must be a number or [height, width]`);
  if (latent && !latent.every((side) => Number.isInteger(side) && side > 0)) {
    throw new PipelineError('invalid_model', `malformed ${denoiserConfigPath}: sample_size must be positive integers`);
  }
  const [latentHeight, latentWidth] = latent ?? [FALLBACK_LATENT_SIDE, FALLBACK_LATENT_SIDE];
  return {
    denoiser,
    denoiserConfig,
    denoiserConfigPath,
    vaeConfig,
    vaeConfigPath,
    vaeScaleFactor,
    latentWidth,
    latentHeight,
    sampleSizeGiven: latent !== undefined,
    nativeWidth: latentWidth * vaeScaleFactor,
    nativeHeight: latentHeight * vaeScaleFactor,
  };
}
