/**
 * Text-guided enhancement of a large image (Stability's creative and conservative upscales): resize to
 * the output size, then an image-to-image pass tile by tile at the engine's native size, with the
 * prompt. Tiles overlap by a quarter and are blended with weights that fall linearly to 0 across each
 * overlap, so no seam shows; only one tile is in the model at a time, and the image itself is held as
 * one float RGB accumulator, so memory grows with the output size and never with the model's view of it.
 */
import sharp from 'sharp';
import { PipelineError } from './errors';
import { interleavedToPlanar, planarToRgb8 } from './image';
import { resolveSeed } from './rng';
import { checkImage, type SafetyChecker, type SafetyMode } from './safety';
import type { GeneratedImage, GenerateRequest, GenerateResult, OutputFormat, ProgressEvent, WeightedPrompt } from './types';

/** What a tiled pass needs of a pipeline: one image-to-image call per tile. */
export interface TileGenerator {
  generate(req: GenerateRequest): Promise<GenerateResult>;
  /** The engine's safety checker, which the finished image goes through. */
  safety?: SafetyChecker;
}

export interface EnhanceRequest {
  /** Encoded input image. */
  image: Buffer;
  /** The output size; the image is resized to it first (Lanczos). */
  width: number;
  height: number;
  /** The tile: the engine's native size. */
  tileWidth: number;
  tileHeight: number;
  prompts: WeightedPrompt[];
  /** Fraction of each tile kept (image_strength): 1 - the denoise the creativity implies. */
  imageStrength: number;
  steps: number;
  cfgScale: number;
  sampler?: string;
  /** 0 = random; tile i uses seed + i, so one seed gives one image. */
  seed?: number;
  outputFormat: OutputFormat;
  engineId?: string;
  /** The safety mode for the whole enhanced image (the tiles are not checked one by one: a concept may span them). */
  safety?: SafetyMode;
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

/** Tile origins along one axis: from 0, a stride of tile - overlap, the last flush with the end. */
export function tileOrigins(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const stride = tile - overlap;
  const origins: number[] = [];
  for (let at = 0; at + tile < size; at += stride) origins.push(at);
  origins.push(size - tile);
  return origins;
}

// A tile's blend weight at offset i of n: ramps over `overlap` pixels at each edge that meets another tile.
function ramp(i: number, n: number, overlap: number, rampStart: boolean, rampEnd: boolean): number {
  let w = 1;
  if (rampStart) w = Math.min(w, (i + 0.5) / overlap);
  if (rampEnd) w = Math.min(w, (n - i - 0.5) / overlap);
  return w;
}

export async function tiledEnhance(generator: TileGenerator, req: EnhanceRequest): Promise<GeneratedImage> {
  const { width, height, tileWidth, tileHeight } = req;
  if (width < tileWidth || height < tileHeight) {
    throw new PipelineError('invalid_image_dimensions', `the output ${width}x${height} is smaller than one ${tileWidth}x${tileHeight} tile`);
  }
  const seed = resolveSeed(req.seed);
  const resized = await sharp(req.image).removeAlpha().resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
  const overlapX = Math.floor(tileWidth / 4);
  const overlapY = Math.floor(tileHeight / 4);
  const xs = tileOrigins(width, tileWidth, overlapX);
  const ys = tileOrigins(height, tileHeight, overlapY);
  const sum = new Float32Array(width * height * 3);
  const weight = new Float32Array(width * height);
  const tiles = xs.length * ys.length;
  let done = 0;
  for (const [row, y0] of ys.entries()) {
    for (const [col, x0] of xs.entries()) {
      if (req.signal?.aborted) throw new PipelineError('canceled', `enhancement canceled before tile ${done + 1} of ${tiles}`);
      const tile = await sharp(resized, { raw: { width, height, channels: 3 } }).extract({ left: x0, top: y0, width: tileWidth, height: tileHeight }).png().toBuffer();
      const index = done;
      const result = await generator.generate({
        prompts: req.prompts,
        width: tileWidth,
        height: tileHeight,
        steps: req.steps,
        cfgScale: req.cfgScale,
        sampler: req.sampler,
        seed: (seed + index) % 4294967296 || 1,
        initImage: tile,
        imageStrength: req.imageStrength,
        outputFormat: 'png',
        engineId: req.engineId,
        safety: 'off',
        signal: req.signal,
        onProgress: (p) => req.onProgress?.({ ...p, step: index * p.total + p.step, total: tiles * p.total }),
      });
      const pixels = await sharp(result.images[0].data).removeAlpha().raw().toBuffer();
      // Edges that meet a neighbour ramp; the image's own edges keep full weight.
      for (let ty = 0; ty < tileHeight; ty++) {
        const wy = ramp(ty, tileHeight, overlapY, row > 0, row < ys.length - 1);
        for (let tx = 0; tx < tileWidth; tx++) {
          const w = wy * ramp(tx, tileWidth, overlapX, col > 0, col < xs.length - 1);
          const p = (y0 + ty) * width + (x0 + tx);
          const q = (ty * tileWidth + tx) * 3;
          sum[p * 3] += w * pixels[q];
          sum[p * 3 + 1] += w * pixels[q + 1];
          sum[p * 3 + 2] += w * pixels[q + 2];
          weight[p] += w;
        }
      }
      done++;
    }
  }
  const out = Buffer.alloc(width * height * 3);
  for (let p = 0; p < width * height; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(sum[p * 3 + c] / weight[p]);
  // the whole image through the engine's checker, as a generation's images go
  const checked = await checkImage(generator.safety, interleavedToPlanar(out, width, height, 3), req.safety);
  let image = sharp(planarToRgb8(checked.image), { raw: { width, height, channels: 3 } });
  image = req.outputFormat === 'jpeg' ? image.jpeg({ quality: 95 }) : req.outputFormat === 'webp' ? image.webp({ quality: 95 }) : image.png();
  const data = await image.toBuffer();
  return { data, seed, contentType: `image/${req.outputFormat}`, width, height, finishReason: checked.finishReason };
}
