import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REQUEST_DEFAULTS } from './defaults';
import { folderGeometry, readJsonFile } from './folder';

export { REQUEST_DEFAULTS };
import type { SchedulerConfig } from './schedulers/scheduler';
import { samplerOfSchedulerConfig } from './schedulers/samplers';
import { type FamilyId, type FamilyInput, familyOf, FAMILIES, type Mode, SDXL_SIZES } from './families/catalog';

/**
 * Engine discovery reads only JSON files, never ONNX graphs, so the API can list engines without
 * importing onnxruntime-node. Import it as `@sdq/pipeline/engines`. The API and the worker describe an
 * engine from this one place: family, native and allowed sizes, samplers, modes, and the operator's
 * manifest (`sdq-engine.json`).
 */
export type EngineKind = 'generation' | 'upscale';

/** The operator's manifest, `sdq-engine.json` in an engine's folder; every field optional. */
export interface EngineManifest {
  /** Other engine ids that reach this engine (e.g. Stability's `stable-diffusion-xl-1024-v1-0`). */
  aliases?: string[];
  /** The only sizes accepted, as "WxH". Not with max_pixels. */
  allowed_sizes?: string[];
  /** The largest width x height accepted (any multiple of the family's size step). Not with allowed_sizes. */
  max_pixels?: number;
  /** Defaults for requests that give none. */
  steps?: number;
  cfg_scale?: number;
  sampler?: string;
  /** The entry of the price table this engine is priced by. Default: the engine's own id. */
  price?: string;
  /**
   * This engine's style presets: Stability's preset name -> the text added to the positive prompts ("" adds
   * nothing). When given it is the whole table: a preset it does not name adds nothing on this engine.
   * Absent: Stability's own table. A null-prototype record.
   */
  style_presets?: Readonly<Record<string, string>>;
  /** A safety checker folder this engine's images go through, relative to the engine folder (`../checkers/sd`). */
  safety_checker?: string;
}

/**
 * Stability's style preset names (the v1 and v2beta `style_preset` field). The texts live in
 * @sdq/contracts; test/contracts-pipeline.test.ts keeps the two name lists equal.
 */
export const STYLE_PRESET_NAMES = [
  '3d-model', 'analog-film', 'anime', 'cinematic', 'comic-book', 'digital-art', 'enhance', 'fantasy-art', 'isometric',
  'line-art', 'low-poly', 'modeling-compound', 'neon-punk', 'origami', 'photographic', 'pixel-art', 'tile-texture',
] as const;

export const MANIFEST_FILE = 'sdq-engine.json';

/** The sizes an engine takes. */
export interface SizeLimits {
  /** Sides are multiples of this. */
  step: number;
  minSide: number;
  maxPixels: number;
  /** When set, exactly these "WxH" sizes. */
  allowed?: readonly string[];
}

interface EngineCommon {
  /** Folder name. */
  id: string;
  dir: string;
  /** Pipeline class from model_index.json, or 'Upscaler'. */
  pipelineClass: string;
  modes: Mode[];
  /** The operator's manifest, validated; {} when there is none. */
  manifest: EngineManifest;
  description: string;
}

/** A diffusion engine, every default resolved here: nothing that reads one needs a fallback of its own. */
export interface GenerationEngineInfo extends EngineCommon {
  kind: 'generation';
  /** The diffusion family (undefined for a pipeline class sdq does not serve). */
  family?: FamilyId;
  familyName?: string;
  /** Native output size: the denoiser's sample_size times the VAE's factor, else 64 latent cells a side (folder.ts, which the worker reads too). */
  nativeWidth: number;
  nativeHeight: number;
  /** Output sizes accepted (engines of a family sdq serves). */
  sizes?: SizeLimits;
  /** Samplers the family can use. */
  samplers?: readonly string[];
  /** The family's inputs beyond SD's (prompt_2, prompt_3, micro_conditioning): what a dialect passes on. */
  inputs: readonly FamilyInput[];
  /** Defaults for requests that give none: the manifest's, else the family's, else sdq's (REQUEST_DEFAULTS). */
  defaults: { steps: number; cfgScale: number; sampler?: string };
  /** The sampler the folder's scheduler_config.json amounts to: what runs when neither request nor defaults name one. */
  schedulerSampler?: string;
  /** The price table entry of the engine's family, for an engine the table does not name. */
  familyPrice?: string;
}

export interface UpscaleEngineInfo extends EngineCommon {
  kind: 'upscale';
  /** Upscale factor. */
  scale?: number;
}

export type EngineInfo = GenerationEngineInfo | UpscaleEngineInfo;

/** A manifest that cannot be used: the message names the file and the field. */
export class EngineManifestError extends Error {
  readonly code = 'invalid_engine_manifest';
  constructor(message: string) {
    super(message);
    this.name = 'EngineManifestError';
  }
}


/** The largest area any default allows, whatever the native size (the issue of a 23 GB worker). */
export const DEFAULT_MAX_PIXELS = 1_048_576;

function schedulerSamplerOf(dir: string, samplers: readonly string[] | undefined): string | undefined {
  const config = readJsonFile(join(dir, 'scheduler', 'scheduler_config.json'), false);
  const name = config ? samplerOfSchedulerConfig(config as SchedulerConfig) : undefined;
  return name && samplers?.includes(name) ? name : undefined;
}

const SIZE = /^([1-9]\d{1,4})x([1-9]\d{1,4})$/;

/** Validates a folder's sdq-engine.json; {} when there is none. */
export function readManifest(dir: string, samplers: readonly string[] = []): EngineManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return {};
  const fail = (field: string, message: string) => new EngineManifestError(`Invalid engine manifest ${path}: ${field}: ${message}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw fail('(file)', `not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('(root)', 'must be a JSON object');
  const m = raw as Record<string, unknown>;
  const known = ['$comment', 'aliases', 'allowed_sizes', 'max_pixels', 'steps', 'cfg_scale', 'sampler', 'price', 'style_presets', 'safety_checker'];
  for (const key of Object.keys(m)) if (!known.includes(key)) throw fail(key, `is not a manifest field (fields: ${known.slice(1).join(', ')})`);
  const strings = (field: string, pattern: RegExp, what: string): string[] | undefined => {
    const v = m[field];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string' && pattern.test(s))) throw fail(field, `must be a non-empty list of ${what}`);
    return v as string[];
  };
  const int = (field: string, min: number, max: number): number | undefined => {
    const v = m[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw fail(field, `must be a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`);
    return v;
  };
  const manifest: EngineManifest = {
    aliases: strings('aliases', /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'engine ids (letters, digits, . _ -)'),
    allowed_sizes: strings('allowed_sizes', SIZE, '"WxH" sizes such as "1024x1024"'),
    max_pixels: int('max_pixels', 4096, 64 * 1024 * 1024),
    steps: int('steps', 1, 150),
    price: typeof m.price === 'string' && m.price.length > 0 ? m.price : undefined,
  };
  if (m.price !== undefined && manifest.price === undefined) throw fail('price', 'must be the name of a price table entry');
  if (m.safety_checker !== undefined) {
    if (typeof m.safety_checker !== 'string' || !m.safety_checker.length || m.safety_checker.length > 1024) throw fail('safety_checker', 'must be the path of a safety checker folder (safety_checker/ and feature_extractor/), relative to the engine folder');
    manifest.safety_checker = m.safety_checker;
  }
  if (manifest.allowed_sizes && manifest.max_pixels !== undefined) throw fail('max_pixels', 'give allowed_sizes or max_pixels, not both');
  if (m.cfg_scale !== undefined) {
    if (typeof m.cfg_scale !== 'number' || !(m.cfg_scale >= 0 && m.cfg_scale <= 35)) throw fail('cfg_scale', `must be a number from 0 to 35 (got ${JSON.stringify(m.cfg_scale)})`);
    manifest.cfg_scale = m.cfg_scale;
  }
  if (m.sampler !== undefined) {
    if (typeof m.sampler !== 'string' || !samplers.includes(m.sampler)) throw fail('sampler', `must be one of ${samplers.join(', ')} (got ${JSON.stringify(m.sampler)})`);
    manifest.sampler = m.sampler;
  }
  if (m.style_presets !== undefined) {
    const v = m.style_presets;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('style_presets', 'must be an object of preset name -> prompt text');
    const table: Record<string, string> = Object.create(null);
    for (const [name, text] of Object.entries(v)) {
      if (!(STYLE_PRESET_NAMES as readonly string[]).includes(name)) throw fail(`style_presets.${name}`, `is not a Stability style preset (${STYLE_PRESET_NAMES.join(', ')})`);
      if (typeof text !== 'string' || text.length > 500) throw fail(`style_presets.${name}`, 'must be prompt text of at most 500 characters ("" adds nothing)');
      table[name] = text;
    }
    manifest.style_presets = Object.freeze(table);
  }
  for (const key of Object.keys(manifest) as (keyof EngineManifest)[]) if (manifest[key] === undefined) delete manifest[key];
  return manifest;
}

/**
 * The sizes an engine takes. With no manifest: any multiple of the family's size step, at least half
 * the native side, at most 16 times the native area and never over DEFAULT_MAX_PIXELS; a family with
 * trained sizes for its native side (SDXL at 1024) takes exactly those.
 */
function sizeLimits(step: number, native: { width: number; height: number }, fixed: readonly string[] | undefined, manifest: EngineManifest): SizeLimits {
  const nativeSide = Math.min(native.width, native.height);
  const minSide = Math.max(step, Math.floor(nativeSide / 2 / step) * step);
  if (manifest.allowed_sizes) return { step, minSide, maxPixels: Math.max(...manifest.allowed_sizes.map(area)), allowed: manifest.allowed_sizes };
  if (manifest.max_pixels) return { step, minSide, maxPixels: manifest.max_pixels };
  if (fixed) return { step, minSide, maxPixels: Math.max(...fixed.map(area)), allowed: fixed };
  return { step, minSide, maxPixels: Math.min(16 * native.width * native.height, DEFAULT_MAX_PIXELS) };
}

function area(size: string): number {
  const [, w, h] = SIZE.exec(size)!;
  return Number(w) * Number(h);
}

/** Why width x height is not a size of this engine, or undefined when it is. */
export function checkEngineSize(engine: EngineInfo, width: number, height: number): string | undefined {
  const s = engine.kind === 'generation' ? engine.sizes : undefined;
  if (!s) return undefined;
  if (s.allowed) {
    return s.allowed.includes(`${width}x${height}`) ? undefined : `${width}x${height} is not a size of engine ${engine.id}; allowed: ${s.allowed.join(', ')}`;
  }
  if (width % s.step || height % s.step || width < s.minSide || height < s.minSide || width * height > s.maxPixels) {
    return `${width}x${height} is not a size of engine ${engine.id}; allowed: multiples of ${s.step}, each side at least ${s.minSide}, at most ${s.maxPixels} pixels (${describeMax(s)})`;
  }
  return undefined;
}

function describeMax(s: SizeLimits): string {
  const side = Math.floor(Math.sqrt(s.maxPixels) / s.step) * s.step;
  return `up to ${side}x${side} square`;
}

/** The graph file of an upscale engine: model.onnx beside a config.json with `scale`. */
export function upscalerGraphPath(dir: string): string | undefined {
  const path = join(dir, 'model.onnx');
  return existsSync(path) ? path : undefined;
}

/** An engine's description from its folder's JSON; throws EngineManifestError for a bad manifest. */
export function describeEngine(dir: string, id: string): EngineInfo | undefined {
  const index = readJsonFile(join(dir, 'model_index.json'), false);
  if (index) {
    const geometry = folderGeometry(dir, index);
    const size = { width: geometry.nativeWidth, height: geometry.nativeHeight };
    const pipelineClass = String(index._class_name ?? 'StableDiffusionPipeline');
    const family = familyOf(pipelineClass);
    const manifest = readManifest(dir, family?.samplers ?? []);
    const modes: Mode[] = ['text-to-image'];
    if (existsSync(join(dir, 'vae_encoder'))) modes.push('image-to-image', 'masking');
    const sizes = family && size ? sizeLimits(family.sizeStep, size, family.fixedSizes?.(Math.min(size.width, size.height)), manifest) : undefined;
    return {
      id,
      kind: 'generation',
      dir,
      pipelineClass,
      family: family?.id,
      familyName: family?.name,
      nativeWidth: size.width,
      nativeHeight: size.height,
      sizes,
      samplers: family?.samplers,
      inputs: family?.inputs ?? [],
      modes,
      manifest,
      defaults: {
        steps: manifest.steps ?? family?.defaults?.steps ?? REQUEST_DEFAULTS.steps,
        cfgScale: manifest.cfg_scale ?? family?.defaults?.cfgScale ?? REQUEST_DEFAULTS.cfgScale,
        sampler: manifest.sampler ?? family?.defaults?.sampler,
      },
      schedulerSampler: schedulerSamplerOf(dir, family?.samplers),
      familyPrice: family?.defaultPrice,
      // the native size is in capabilities (native_width, native_height): said once
      description: `${family?.name ?? pipelineClass} (ONNX)`,
    };
  }
  if (upscalerGraphPath(dir)) {
    const config = readJsonFile(join(dir, 'config.json'), false);
    const scale = typeof config?.scale === 'number' ? config.scale : undefined;
    return {
      id,
      kind: 'upscale',
      dir,
      pipelineClass: 'Upscaler',
      scale,
      modes: ['upscale'],
      manifest: readManifest(dir),
      description: `Super-resolution (ONNX)${scale ? `, x${scale}` : ''}`,
    };
  }
  return undefined;
}

/**
 * Every folder under modelsDir that holds a model_index.json or an upscaler graph; id = folder name.
 * A folder whose manifest is bad is passed to onError (default: thrown).
 */
export function discoverEngines(modelsDir: string, onError?: (id: string, err: Error) => void): EngineInfo[] {
  if (!existsSync(modelsDir)) return [];
  const engines: EngineInfo[] = [];
  for (const name of readdirSync(modelsDir).sort()) {
    // a hidden folder is never an engine: a pull's staging folder (.pull-<id>) until it is renamed whole
    if (name.startsWith('.')) continue;
    // the adapter folders' default places (LORA_DIR, EMBEDDINGS_DIR) are never engines
    if (name === 'loras' || name === 'embeddings') continue;
    const dir = join(modelsDir, name);
    // statSync follows symbolic links, so an operator can link a folder under a Stability engine id.
    if (!statSync(dir).isDirectory()) continue;
    try {
      const info = describeEngine(dir, name);
      if (info) engines.push(info);
    } catch (err) {
      if (!onError) throw err;
      onError(name, err as Error);
    }
  }
  return engines;
}

/**
 * The default engine, the same for every process: DEFAULT_ENGINE when it is one of the engines, else the
 * first generation engine (folders sort by name).
 */
export function defaultEngineOf(engines: Iterable<EngineInfo>, configured?: string): string | undefined {
  const list = [...engines];
  if (configured && list.some((e) => e.id === configured)) return configured;
  return list.find((e) => e.kind === 'generation')?.id;
}

export { FAMILIES, SDXL_SIZES };
export type { FamilyInput };
