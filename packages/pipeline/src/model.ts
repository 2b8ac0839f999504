import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OnnxClock, OnnxModel } from './backends/onnx';
import { PipelineError } from './errors';
import { ClipTokenizer, TokenizerFileError } from './tokenizer/clip-tokenizer';
import type { RuntimeOptions } from './types';

/** Everything a Stable Diffusion (1.x / 2.x / Turbo) ONNX folder provides, read from the folder itself. */
export interface StableDiffusionModel {
  dir: string;
  tokenizer: ClipTokenizer;
  textEncoder: OnnxModel;
  unet: OnnxModel;
  vaeEncoder?: OnnxModel;
  vaeDecoder: OnnxModel;
  schedulerConfig: Record<string, unknown>;
  /** vae_decoder/config.json scaling_factor, else 0.18215 (diffusers' AutoencoderKL default). */
  scalingFactor: number;
  /** Pixels per latent cell: 2^(len(vae block_out_channels) - 1). */
  vaeScaleFactor: number;
  /** Latent sizes must be multiples of this for the UNet's down-sampling: 2^(len(unet block_out_channels) - 1). */
  unetMultiple: number;
  nativeWidth: number;
  nativeHeight: number;
  clock: OnnxClock;
}

const DEFAULT_SCALING_FACTOR = 0.18215;

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

function blockCount(config: Record<string, unknown> | undefined, file: string, fallback: number): number {
  const blocks = config?.block_out_channels;
  if (blocks === undefined) return fallback;
  if (!Array.isArray(blocks) || blocks.length === 0) {
    throw new PipelineError('invalid_model', `malformed ${file}: block_out_channels must be a non-empty array`);
  }
  return blocks.length;
}

/**
 * Loads a folder in the diffusers ONNX layout. Files are checked before any graph is loaded so that a
 * broken folder fails fast with one error naming the file.
 */
export async function loadStableDiffusionModel(dir: string, options: RuntimeOptions = {}): Promise<StableDiffusionModel> {
  if (!existsSync(dir)) throw new PipelineError('invalid_model', `model folder not found: ${dir}`);
  const index = readJsonFile(join(dir, 'model_index.json'), true);
  for (const component of ['tokenizer', 'text_encoder', 'unet', 'vae_decoder', 'scheduler']) {
    if (!(component in index)) {
      throw new PipelineError('invalid_model', `malformed ${join(dir, 'model_index.json')}: no "${component}" component`);
    }
  }
  const graph = (name: string) => join(dir, name, 'model.onnx');
  for (const name of ['text_encoder', 'unet', 'vae_decoder']) {
    if (!existsSync(graph(name))) throw new PipelineError('invalid_model', `model file missing: ${graph(name)}`);
  }
  const schedulerConfig = readJsonFile(join(dir, 'scheduler', 'scheduler_config.json'), true);
  if (typeof schedulerConfig._class_name !== 'string') {
    throw new PipelineError('invalid_model', `malformed ${join(dir, 'scheduler', 'scheduler_config.json')}: no _class_name`);
  }
  const vaeConfigPath = join(dir, 'vae_decoder', 'config.json');
  const vaeConfig = readJsonFile(vaeConfigPath, false);
  const unetConfigPath = join(dir, 'unet', 'config.json');
  const unetConfig = readJsonFile(unetConfigPath, false);
  const scalingFactor = typeof vaeConfig?.scaling_factor === 'number' ? vaeConfig.scaling_factor : DEFAULT_SCALING_FACTOR;
  const vaeScaleFactor = 2 ** (blockCount(vaeConfig, vaeConfigPath, 4) - 1);
  const unetMultiple = 2 ** (blockCount(unetConfig, unetConfigPath, 4) - 1);

  let tokenizer: ClipTokenizer;
  try {
    tokenizer = await ClipTokenizer.fromFolder(join(dir, 'tokenizer'));
  } catch (err) {
    if (err instanceof TokenizerFileError) throw new PipelineError('invalid_model', err.message);
    throw err;
  }

  const clock = new OnnxClock();
  const textEncoder = await OnnxModel.load(graph('text_encoder'), options, clock);
  // The other graphs start at the provider that worked, so a fallback warns once per model, not per graph.
  const providers = options.providers?.length ? options.providers : undefined;
  const rest = { ...options, providers: providers?.slice(Math.max(0, providers.indexOf(textEncoder.provider))) };
  const unet = await OnnxModel.load(graph('unet'), rest, clock);
  const vaeDecoder = await OnnxModel.load(graph('vae_decoder'), rest, clock);
  const vaeEncoder = existsSync(graph('vae_encoder')) ? await OnnxModel.load(graph('vae_encoder'), rest, clock) : undefined;

  // Native size from the UNet config; else from the graph's static latent shape; else SD 1.x's 64 latents.
  const sampleSize = unetConfig?.sample_size;
  const sampleInput = unet.inputs[0]?.shape;
  const staticSide = (d: number | string | undefined) => (typeof d === 'number' && d > 0 ? d : undefined);
  const latentH = Array.isArray(sampleSize) ? Number(sampleSize[0]) : typeof sampleSize === 'number' ? sampleSize : staticSide(sampleInput?.[2]) ?? 64;
  const latentW = Array.isArray(sampleSize) ? Number(sampleSize[1]) : typeof sampleSize === 'number' ? sampleSize : staticSide(sampleInput?.[3]) ?? 64;

  return {
    dir,
    tokenizer,
    textEncoder,
    unet,
    vaeEncoder,
    vaeDecoder,
    schedulerConfig,
    scalingFactor,
    vaeScaleFactor,
    unetMultiple,
    nativeWidth: latentW * vaeScaleFactor,
    nativeHeight: latentH * vaeScaleFactor,
    clock,
  };
}
