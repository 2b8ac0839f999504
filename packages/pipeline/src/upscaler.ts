import { basename, join } from 'node:path';
import sharp from 'sharp';
import { OnnxClock, OnnxModel } from './backends/onnx';
import { PipelineError } from './errors';
import { CONTENT_TYPES, decoding, encodeImage, imageSize, interleavedToPlanar, type PlanarImage } from './image';
import { readJsonFile } from './folder';
import { checkImage, type SafetyChecker } from './safety';
import type { GeneratedImage, OutputFormat, RuntimeOptions, UpscaleRequest } from './types';

export interface UpscalerOptions extends RuntimeOptions {
  /** Input tile side in pixels; larger images are processed tile by tile. Default 256. */
  tileSize?: number;
  /** Context pixels added around each tile and cropped off again, so tiles join seamlessly. Default 16. */
  tileOverlap?: number;
}

/**
 * ESRGAN-style super-resolution: one fully convolutional graph, RGB in [0, 1] -> RGB in [0, 1] at
 * `scale` times the size (the Real-ESRGAN ONNX convention). Large images go through in tiles with
 * overlapping context, so memory stays bounded by the tile size.
 */
export class Upscaler {
  /** The safety checker its outputs go through (an upscale must not undo a blur); unset = none. */
  safety: SafetyChecker | undefined;

  private constructor(
    readonly model: OnnxModel,
    readonly scale: number,
    readonly engineId: string,
    private readonly tileSize: number,
    private readonly tileOverlap: number,
    private readonly clock: OnnxClock,
  ) {}

  static async load(dir: string, options: UpscalerOptions = {}): Promise<Upscaler> {
    const config = readJsonFile(join(dir, 'config.json'), false) ?? {};
    const clock = new OnnxClock();
    const model = await OnnxModel.load(join(dir, 'model.onnx'), options, clock);
    let scale: number | undefined;
    const inShape = model.inputs[0].shape;
    const outShape = model.outputs[0].shape;
    // Static shapes give the scale directly; fully dynamic graphs rely on config.json, else a probe run.
    if (typeof inShape[2] === 'number' && typeof outShape[2] === 'number' && inShape[2] > 0) scale = outShape[2] / inShape[2];
    else if (typeof config.scale === 'number') scale = config.scale;
    else {
      const probe = await model.run({ [model.inputs[0].name]: { data: new Float32Array(3 * 8 * 8), dims: [1, 3, 8, 8] } });
      scale = Object.values(probe)[0].dims[2] / 8;
    }
    if (!Number.isInteger(scale) || scale < 1) {
      throw new PipelineError('invalid_model', `cannot tell the upscale factor of ${join(dir, 'model.onnx')} (got ${scale})`);
    }
    return new Upscaler(model, scale, basename(dir), options.tileSize ?? 256, options.tileOverlap ?? 16, clock);
  }

  get onnxMs(): number {
    return this.clock.ms;
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }

  /** Runs the graph over a planar image, tiled when it is larger than one tile. */
  async upscalePlanar(image: PlanarImage, opts: { tiled?: boolean; signal?: AbortSignal; onTile?: (done: number, total: number) => void } = {}): Promise<PlanarImage> {
    const { width, height } = image;
    const s = this.scale;
    const tile = this.tileSize;
    const pad = this.tileOverlap;
    const tiled = opts.tiled ?? (width > tile || height > tile);
    if (!tiled) {
      const out = await this.runTile(image.data, width, height);
      opts.onTile?.(1, 1);
      return { data: out, width: width * s, height: height * s };
    }
    const outW = width * s;
    const outH = height * s;
    const out = new Float32Array(3 * outW * outH);
    const cols = Math.ceil(width / tile);
    const rowsN = Math.ceil(height / tile);
    let done = 0;
    for (let ty = 0; ty < rowsN; ty++) {
      for (let tx = 0; tx < cols; tx++) {
        if (opts.signal?.aborted) throw new PipelineError('canceled', `upscale canceled after tile ${done} of ${cols * rowsN}`);
        // core region of this tile, and the region with context around it
        const x0 = tx * tile, x1 = Math.min(width, x0 + tile);
        const y0 = ty * tile, y1 = Math.min(height, y0 + tile);
        const cx0 = Math.max(0, x0 - pad), cx1 = Math.min(width, x1 + pad);
        const cy0 = Math.max(0, y0 - pad), cy1 = Math.min(height, y1 + pad);
        const cw = cx1 - cx0, ch = cy1 - cy0;
        const crop = new Float32Array(3 * cw * ch);
        for (let c = 0; c < 3; c++) {
          for (let y = 0; y < ch; y++) {
            const src = c * width * height + (cy0 + y) * width + cx0;
            crop.set(image.data.subarray(src, src + cw), c * cw * ch + y * cw);
          }
        }
        const result = await this.runTile(crop, cw, ch);
        // copy the core back, dropping the context
        const rw = cw * s;
        for (let c = 0; c < 3; c++) {
          for (let y = y0 * s; y < y1 * s; y++) {
            const srcRow = c * rw * ch * s + (y - cy0 * s) * rw + (x0 - cx0) * s;
            const dst = c * outW * outH + y * outW + x0 * s;
            out.set(result.subarray(srcRow, srcRow + (x1 - x0) * s), dst);
          }
        }
        opts.onTile?.(++done, cols * rowsN);
      }
    }
    return { data: out, width: outW, height: outH };
  }

  private async runTile(data: Float32Array, width: number, height: number): Promise<Float32Array> {
    const input = this.model.inputs[0].name;
    const out = await this.model.run({ [input]: { data, dims: [1, 3, height, width] } });
    return Object.values(out)[0].data;
  }

  /** Stability's upscale: `width` or `height` (not both) picks the output size; default = scale x. */
  async upscale(req: UpscaleRequest): Promise<GeneratedImage> {
    const started = performance.now();
    if (req.width !== undefined && req.height !== undefined) {
      throw new PipelineError('invalid_height_or_width', 'give width or height for an upscale, not both');
    }
    const size = await imageSize(req.image, 'image');
    const targetW = req.width ?? (req.height !== undefined ? Math.round((size.width * req.height) / size.height) : size.width * this.scale);
    const targetH = req.height ?? (req.width !== undefined ? Math.round((size.height * req.width) / size.width) : size.height * this.scale);
    for (const [name, v] of [['width', targetW], ['height', targetH]] as const) {
      if (!Number.isInteger(v) || v < size[name] || v > size[name] * this.scale) {
        throw new PipelineError(
          'invalid_height_or_width',
          `${name} must be an integer from ${size[name]} to ${size[name] * this.scale} for a x${this.scale} upscale of a ${size.width}x${size.height} image (got ${v})`,
        );
      }
    }
    const format: OutputFormat = req.outputFormat ?? 'png';
    if (!(format in CONTENT_TYPES)) throw new PipelineError('invalid_output_format', `output format must be png, jpeg or webp (got ${format})`);
    const { data, info } = await decoding('image', 'invalid_image', () =>
      sharp(req.image, { failOn: 'warning' }).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true }),
    );
    const input = interleavedToPlanar(data, info.width, info.height, info.channels);
    let out = await this.upscalePlanar(input, {
      signal: req.signal,
      onTile: (step, total) => req.onProgress?.({ step, total, elapsedMs: performance.now() - started }),
    });
    if (out.width !== targetW || out.height !== targetH) {
      const encoded = await sharp(await encodeImage(out, 'png')).resize(targetW, targetH, { kernel: 'lanczos3' }).raw().toBuffer({ resolveWithObject: true });
      out = interleavedToPlanar(encoded.data, encoded.info.width, encoded.info.height, encoded.info.channels);
    }
    const parameters = `Upscale: x${this.scale}, Size: ${out.width}x${out.height}, Model: ${this.engineId}`;
    const checked = await checkImage(this.safety, out, req.safety);
    return {
      data: await encodeImage(checked.image, format, parameters),
      seed: 0,
      contentType: CONTENT_TYPES[format],
      width: out.width,
      height: out.height,
      finishReason: checked.finishReason,
    };
  }
}
