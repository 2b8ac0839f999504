import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Engine discovery reads only JSON files, never ONNX graphs, so the API can list engines without
 * importing onnxruntime-node. Import it as `@sdq/pipeline/engines`.
 */
export type EngineKind = 'generation' | 'upscale';

export interface EngineInfo {
  /** Folder name. */
  id: string;
  kind: EngineKind;
  dir: string;
  /** Pipeline class from model_index.json, or 'Upscaler'. */
  pipelineClass: string;
  /** Native output size (generation engines). */
  nativeWidth?: number;
  nativeHeight?: number;
  /** Upscale factor (upscale engines). */
  scale?: number;
  description: string;
}

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Native size = UNet sample_size x the VAE's scale factor (2^(len(block_out_channels)-1)). */
function nativeSize(dir: string): { width: number; height: number } | undefined {
  const unet = readJson(join(dir, 'unet', 'config.json'));
  const vae = readJson(join(dir, 'vae_decoder', 'config.json')) ?? readJson(join(dir, 'vae_encoder', 'config.json'));
  const blocks = Array.isArray(vae?.block_out_channels) ? (vae!.block_out_channels as unknown[]).length : 4;
  const factor = 2 ** (blocks - 1);
  const size = unet?.sample_size;
  if (typeof size === 'number') return { width: size * factor, height: size * factor };
  if (Array.isArray(size) && size.length === 2) return { height: Number(size[0]) * factor, width: Number(size[1]) * factor };
  return undefined;
}

/** The graph file of an upscale engine: model.onnx beside a config.json with `scale`. */
export function upscalerGraphPath(dir: string): string | undefined {
  const path = join(dir, 'model.onnx');
  return existsSync(path) ? path : undefined;
}

export function describeEngine(dir: string, id: string): EngineInfo | undefined {
  const index = readJson(join(dir, 'model_index.json'));
  if (index) {
    const size = nativeSize(dir);
    const pipelineClass = String(index._class_name ?? 'StableDiffusionPipeline');
    return {
      id,
      kind: 'generation',
      dir,
      pipelineClass,
      nativeWidth: size?.width,
      nativeHeight: size?.height,
      description: `${pipelineClass} (ONNX)${size ? `, native ${size.width}x${size.height}` : ''}`,
    };
  }
  if (upscalerGraphPath(dir)) {
    const config = readJson(join(dir, 'config.json'));
    const scale = typeof config?.scale === 'number' ? config.scale : undefined;
    return {
      id,
      kind: 'upscale',
      dir,
      pipelineClass: 'Upscaler',
      scale,
      description: `Super-resolution (ONNX)${scale ? `, x${scale}` : ''}`,
    };
  }
  return undefined;
}

/** Every folder under modelsDir that holds a model_index.json or an upscaler graph; id = folder name. */
export function discoverEngines(modelsDir: string): EngineInfo[] {
  if (!existsSync(modelsDir)) return [];
  const engines: EngineInfo[] = [];
  for (const name of readdirSync(modelsDir).sort()) {
    const dir = join(modelsDir, name);
    // statSync follows symbolic links, so an operator can link a folder under a Stability engine id.
    if (!statSync(dir).isDirectory()) continue;
    const info = describeEngine(dir, name);
    if (info) engines.push(info);
  }
  return engines;
}
