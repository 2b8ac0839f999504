import sharp from 'sharp';
import { crc32 } from 'node:zlib';
import { PipelineError } from './errors';
import type { OutputFormat } from './types';

/** Planar float RGB image, values in [0, 1], layout [3, height, width]. */
export interface PlanarImage {
  data: Float32Array;
  width: number;
  height: number;
}

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
};

async function metadataOf(bytes: Buffer, what: string): Promise<sharp.Metadata> {
  try {
    return await sharp(bytes).metadata();
  } catch (err) {
    throw new PipelineError('invalid_image', `${what} is not a readable PNG, JPEG or WebP image (${(err as Error).message})`);
  }
}

/**
 * Runs a decode; a header that read fine over data that does not (truncated, corrupt) is the input's
 * fault, so it becomes a PipelineError (not retried), never a runtime fault.
 */
export async function decoding<T>(what: string, code: 'invalid_image' | 'invalid_mask_image', run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof PipelineError) throw err;
    throw new PipelineError(code, `${what} could not be decoded: its data is truncated or corrupt (${(err as Error).message})`);
  }
}

/** Decodes an image and fits it to width x height (cover, centred), as RGB in [0, 1]. */
export async function decodeImage(bytes: Buffer, width: number, height: number, what = 'init_image'): Promise<PlanarImage> {
  await metadataOf(bytes, what);
  const { data, info } = await decoding(what, 'invalid_image', () =>
    sharp(bytes, { failOn: 'warning' })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(width, height, { fit: 'cover', position: 'centre' })
      .raw()
      .toBuffer({ resolveWithObject: true }),
  );
  return interleavedToPlanar(data, info.width, info.height, info.channels);
}

/** The image's own size, for requests that give none. */
export async function imageSize(bytes: Buffer, what = 'init_image'): Promise<{ width: number; height: number; hasAlpha: boolean }> {
  const meta = await metadataOf(bytes, what);
  if (!meta.width || !meta.height) throw new PipelineError('invalid_image', `${what} has no dimensions`);
  return { width: meta.width, height: meta.height, hasAlpha: Boolean(meta.hasAlpha) };
}

/**
 * A single-channel mask in [0, 1] at width x height, where 1 = repaint.
 * `source` says how pixels map: white = repaint, black = repaint, or transparent (init alpha) = repaint.
 */
export async function decodeMask(
  bytes: Buffer,
  width: number,
  height: number,
  source: 'MASK_IMAGE_WHITE' | 'MASK_IMAGE_BLACK' | 'INIT_IMAGE_ALPHA',
  what = 'mask_image',
): Promise<Float32Array> {
  const meta = await metadataOf(bytes, what);
  const pipeline = sharp(bytes, { failOn: 'warning' }).resize(width, height, { fit: 'cover', position: 'centre' });
  if (source === 'INIT_IMAGE_ALPHA' && !meta.hasAlpha) throw new PipelineError('invalid_mask_image', `${what} has no alpha channel, which INIT_IMAGE_ALPHA needs`);
  const channel = await decoding(what, source === 'INIT_IMAGE_ALPHA' ? 'invalid_image' : 'invalid_mask_image', () =>
    source === 'INIT_IMAGE_ALPHA'
      ? pipeline.ensureAlpha().extractChannel('alpha').raw().toBuffer()
      : pipeline.flatten({ background: '#000000' }).greyscale().raw().toBuffer(),
  );
  const mask = new Float32Array(width * height);
  for (let i = 0; i < mask.length; i++) {
    const v = channel[i] / 255;
    mask[i] = source === 'MASK_IMAGE_WHITE' ? v : 1 - v;
  }
  return mask;
}

export function interleavedToPlanar(data: Uint8Array, width: number, height: number, channels: number): PlanarImage {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = data[i * channels] / 255;
    out[plane + i] = data[i * channels + 1] / 255;
    out[2 * plane + i] = data[i * channels + 2] / 255;
  }
  return { data: out, width, height };
}

/** Planar [0, 1] RGB -> interleaved 8-bit RGB, rounding to nearest. */
export function planarToRgb8(image: PlanarImage): Buffer {
  const plane = image.width * image.height;
  const out = Buffer.allocUnsafe(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = image.data[c * plane + i];
      out[i * 3 + c] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
    }
  }
  return out;
}

/**
 * Encodes an RGB image. PNGs carry the generation parameters in a `parameters` tEXt chunk, the
 * convention AUTOMATIC1111 established, so tools that read A1111 images show them.
 */
export async function encodeImage(image: PlanarImage, format: OutputFormat, parameters?: string): Promise<Buffer> {
  const raw = sharp(planarToRgb8(image), { raw: { width: image.width, height: image.height, channels: 3 } });
  switch (format) {
    case 'png': {
      const png = await raw.png({ compressionLevel: 6 }).toBuffer();
      return parameters ? insertPngText(png, 'parameters', parameters) : png;
    }
    case 'jpeg':
      return raw.jpeg({ quality: 92 }).toBuffer();
    case 'webp':
      return raw.webp({ quality: 92 }).toBuffer();
    default:
      throw new PipelineError('invalid_output_format', `output format must be png, jpeg or webp (got ${String(format)})`);
  }
}

/** Inserts a tEXt chunk (Latin-1) or an iTXt chunk (UTF-8) right after IHDR. */
export function insertPngText(png: Buffer, keyword: string, text: string): Buffer {
  const latin1 = /^[\x00-\xff]*$/.test(text);
  const body = latin1
    ? Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')])
    : Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  const type = Buffer.from(latin1 ? 'tEXt' : 'iTXt', 'latin1');
  const chunk = Buffer.alloc(12 + body.length);
  chunk.writeUInt32BE(body.length, 0);
  type.copy(chunk, 4);
  body.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(Buffer.concat([type, body])) >>> 0, 8 + body.length);
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk, png.subarray(ihdrEnd)]);
}

/** Reads tEXt/iTXt chunks back (for tests and for clients that want the parameters). */
export function readPngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let offset = 8;
  while (offset + 8 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const body = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'tEXt') {
      const nul = body.indexOf(0);
      out[body.toString('latin1', 0, nul)] = body.toString('latin1', nul + 1);
    } else if (type === 'iTXt') {
      const nul = body.indexOf(0);
      // keyword, NUL, compression flag, method, language tag NUL, translated keyword NUL, text
      let p = nul + 3;
      p = body.indexOf(0, p) + 1;
      p = body.indexOf(0, p) + 1;
      out[body.toString('latin1', 0, nul)] = body.toString('utf8', p);
    }
    if (type === 'IEND') break;
    offset += 12 + length;
  }
  return out;
}
