/**
 * The safety checker, as diffusers runs it after the VAE decode: the images through CLIP's image
 * preprocessing (the feature extractor's preprocessor_config.json: shortest edge resized with its
 * resample filter, centre crop, rescale, normalise) into the graph's `clip_input`, the images themselves
 * (NHWC, 0..1) into `images`, and `has_nsfw_concepts` read back, one flag per image. What becomes of a
 * flagged image is the request's safety mode: blurred (as Stability v1 returns it), black (as diffusers
 * does), refused (no image: the request fails), flagged (as made, marked), or not checked at all (off).
 *
 * A checker folder holds `safety_checker/model.onnx` and `feature_extractor/preprocessor_config.json`, the
 * layout diffusers' ONNX export wrote for SD 1.x: an engine folder that has them, a folder its
 * `sdq-engine.json` names (`"safety_checker": "../checkers/sd"`), or the worker's SAFETY_CHECKER_DIR.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { OnnxClock, OnnxModel } from './backends/onnx';
import { PipelineError } from './errors';
import { interleavedToPlanar, type PlanarImage, planarToRgb8 } from './image';
import { readJsonFile } from './folder';
import type { RuntimeOptions } from './types';
import type { SafetyMode } from '@sdq/contracts';

export { SAFETY_MODES, type SafetyMode } from '@sdq/contracts';

/** PIL's resample filters (the config's `resample`) as sharp's kernels. */
const KERNELS: Record<number, keyof sharp.KernelEnum> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic', 4: 'linear', 5: 'linear' };

interface Preprocessing {
  shortestEdge: number;
  crop: { width: number; height: number } | undefined;
  kernel: keyof sharp.KernelEnum;
  rescale: number;
  mean: number[] | undefined;
  std: number[] | undefined;
}

/** Whether a folder is a checker folder (both files there). */
export function isCheckerFolder(dir: string): boolean {
  return existsSync(join(dir, 'safety_checker', 'model.onnx')) && existsSync(join(dir, 'feature_extractor', 'preprocessor_config.json'));
}

/**
 * The checker an engine runs: its own folder's, else the one its manifest names (relative to the engine
 * folder), else the shared one; undefined when there is none.
 */
export function checkerFolderOf(engineDir: string, manifestChecker: string | undefined, sharedDir: string | undefined): string | undefined {
  if (isCheckerFolder(engineDir)) return engineDir;
  if (manifestChecker) return resolve(engineDir, manifestChecker);
  return sharedDir;
}

function preprocessingOf(dir: string): Preprocessing {
  const path = join(dir, 'feature_extractor', 'preprocessor_config.json');
  const c = readJsonFile(path, true);
  const size = c.size as { shortest_edge?: number; height?: number } | number | undefined;
  const shortestEdge = typeof size === 'number' ? size : (size?.shortest_edge ?? size?.height ?? 224);
  const crop = c.do_center_crop === false ? undefined : (c.crop_size as { width?: number; height?: number } | number | undefined);
  const cropSize = crop === undefined ? undefined : typeof crop === 'number' ? { width: crop, height: crop } : { width: crop.width ?? 224, height: crop.height ?? 224 };
  const numbers = (v: unknown) => (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined);
  if (!Number.isInteger(shortestEdge) || shortestEdge < 1) throw new PipelineError('invalid_model', `${path}: size.shortest_edge must be a positive whole number`);
  return {
    shortestEdge,
    crop: cropSize,
    kernel: KERNELS[typeof c.resample === 'number' ? c.resample : 3] ?? 'cubic',
    rescale: c.do_rescale === false ? 1 : typeof c.rescale_factor === 'number' ? c.rescale_factor : 1 / 255,
    mean: c.do_normalize === false ? undefined : numbers(c.image_mean),
    std: c.do_normalize === false ? undefined : numbers(c.image_std),
  };
}

export class SafetyChecker {
  private constructor(
    readonly dir: string,
    private readonly model: OnnxModel,
    private readonly pre: Preprocessing,
    private readonly flagOutput: string,
    private readonly clock: OnnxClock,
  ) {}

  static async load(dir: string, options: RuntimeOptions = {}): Promise<SafetyChecker> {
    if (!isCheckerFolder(dir)) throw new PipelineError('invalid_model', `${dir} is not a safety checker folder: it needs safety_checker/model.onnx and feature_extractor/preprocessor_config.json`);
    const pre = preprocessingOf(dir);
    const clock = new OnnxClock();
    const model = await OnnxModel.load(join(dir, 'safety_checker', 'model.onnx'), options, clock);
    const names = model.inputs.map((i) => i.name);
    for (const wanted of ['clip_input', 'images']) {
      if (!names.includes(wanted)) {
        await model.dispose();
        throw new PipelineError('invalid_model', `${join(dir, 'safety_checker', 'model.onnx')} has no ${wanted} input (it has ${names.join(', ')}): not a diffusers safety checker export`);
      }
    }
    const flagOutput = model.outputs.find((o) => o.name === 'has_nsfw_concepts')?.name ?? model.outputs.at(-1)!.name;
    return new SafetyChecker(dir, model, pre, flagOutput, clock);
  }

  /** CLIP's pixel values for one image: [3, crop height, crop width]. */
  async clipInput(image: PlanarImage): Promise<{ data: Float32Array; width: number; height: number }> {
    const { shortestEdge, crop, kernel, rescale, mean, std } = this.pre;
    // as diffusers hands the checker PIL images: 8-bit, rounded
    const short = Math.min(image.width, image.height);
    const width = image.width === short ? shortestEdge : Math.floor((shortestEdge * image.width) / short);
    const height = image.height === short ? shortestEdge : Math.floor((shortestEdge * image.height) / short);
    let pipeline = sharp(planarToRgb8(image), { raw: { width: image.width, height: image.height, channels: 3 } }).resize(width, height, { kernel, fit: 'fill' });
    let out = { width, height };
    if (crop) {
      const left = Math.max(0, Math.floor((width - crop.width) / 2));
      const top = Math.max(0, Math.floor((height - crop.height) / 2));
      out = { width: Math.min(crop.width, width), height: Math.min(crop.height, height) };
      pipeline = sharp(await pipeline.raw().toBuffer(), { raw: { width, height, channels: 3 } }).extract({ left, top, ...out });
    }
    const rgb = await pipeline.raw().toBuffer();
    const planar = interleavedToPlanar(rgb, out.width, out.height, 3).data;
    const plane = out.width * out.height;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < plane; i++) {
        // interleavedToPlanar gave v / 255: back to the config's own rescale, then normalised
        const v = planar[c * plane + i] * 255 * rescale;
        planar[c * plane + i] = mean && std ? (v - mean[c]) / std[c] : v;
      }
    }
    return { data: planar, ...out };
  }

  /** One flag per image: true where the checker found a concept it flags. Images of one size, one run. */
  async flags(images: PlanarImage[]): Promise<boolean[]> {
    if (!images.length) return [];
    const clip = await Promise.all(images.map((img) => this.clipInput(img)));
    const { width: cw, height: ch } = clip[0];
    const clipData = new Float32Array(images.length * 3 * cw * ch);
    clip.forEach((c, i) => clipData.set(c.data, i * c.data.length));
    const { width, height } = images[0];
    const plane = width * height;
    // the images as diffusers passes them: NHWC in 0..1
    const nhwc = new Float32Array(images.length * plane * 3);
    images.forEach((img, n) => {
      for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) nhwc[(n * plane + i) * 3 + c] = Math.min(1, Math.max(0, img.data[c * plane + i]));
    });
    const out = await this.model.run({ clip_input: { data: clipData, dims: [images.length, 3, ch, cw] }, images: { data: nhwc, dims: [images.length, height, width, 3] } }, [this.flagOutput]);
    return Array.from(out[this.flagOutput].data, (v) => v !== 0);
  }

  get onnxMs(): number {
    return this.clock.ms;
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

/** A strong Gaussian blur, as Stability v1 answers a filtered image: nothing of the picture but its colours. */
export async function blurred(image: PlanarImage): Promise<PlanarImage> {
  const sigma = Math.max(8, Math.min(image.width, image.height) / 10);
  const raw = await sharp(planarToRgb8(image), { raw: { width: image.width, height: image.height, channels: 3 } }).blur(sigma).raw().toBuffer();
  return interleavedToPlanar(raw, image.width, image.height, 3);
}

/** All black, as diffusers' checker returns a flagged image. */
export function blacked(image: PlanarImage): PlanarImage {
  return { data: new Float32Array(image.data.length), width: image.width, height: image.height };
}

/**
 * A checked image as the mode wants it: untouched (not flagged, or `flag`), blurred, black; `refuse`
 * throws, failing the request. `finishReason` says whether it was flagged.
 */
export async function applySafety(image: PlanarImage, flagged: boolean, mode: SafetyMode): Promise<{ image: PlanarImage; finishReason: 'SUCCESS' | 'CONTENT_FILTERED' }> {
  if (!flagged || mode === 'off') return { image, finishReason: 'SUCCESS' };
  if (mode === 'refuse') throw new PipelineError('content_filtered', 'an image was flagged by the safety checker, and this account\'s safety mode refuses flagged images: no image is returned');
  if (mode === 'flag') return { image, finishReason: 'CONTENT_FILTERED' };
  return { image: mode === 'blur' ? await blurred(image) : blacked(image), finishReason: 'CONTENT_FILTERED' };
}

/** One finished image through a checker (none, or mode off: as it is), then its mode. */
export async function checkImage(checker: SafetyChecker | undefined, image: PlanarImage, mode: SafetyMode | undefined): Promise<{ image: PlanarImage; finishReason: 'SUCCESS' | 'CONTENT_FILTERED' }> {
  const effective = mode ?? (checker ? 'blur' : 'off');
  if (!checker || effective === 'off') return { image, finishReason: 'SUCCESS' };
  const [flagged] = await checker.flags([image]);
  return applySafety(image, flagged, effective);
}
