/**
 * One converter from what a dialect calls a mask to sdq's (a greyscale PNG, white = repaint): A1111's
 * and Stability's mask images mark with white (A1111 with black when inverted), OpenAI's with
 * transparency; without a mask image, the image's own transparent pixels are repainted. The edge can be
 * grown then blurred (v2beta's grow_mask) or only blurred (A1111's mask_blur).
 */
import sharp from 'sharp';
import { ServiceError } from '@sdq/contracts';
import type { CheckedImage } from '../uploads';

export interface MaskOptions {
  /** What the mask image marks for repainting: its white pixels, or its transparent ones. */
  marks: 'white' | 'transparent';
  /** Black marks instead of white (A1111's inpainting_mask_invert). */
  invert?: boolean;
  /** Pixels the marked area grows by, its new edge then blurred (v2beta's grow_mask). Default 0. */
  grow?: number;
  /** Pixels of Gaussian blur on the edge, without growing (A1111's mask_blur). Default 0. */
  blur?: number;
  /** A mask of another size than the image is refused. Default true (A1111 resizes it instead). */
  sameSize?: boolean;
  /** Why a field without an alpha channel cannot say what to repaint. */
  noAlpha(field: 'mask' | 'image'): { field: string; message: string };
}

export async function repaintMask(image: CheckedImage, mask: CheckedImage | undefined, opts: MaskOptions): Promise<Buffer> {
  if (mask && opts.sameSize !== false && (mask.width !== image.width || mask.height !== image.height)) {
    throw new ServiceError('invalid_mask_image', `mask: is ${mask.width}x${mask.height}, expected the image's ${image.width}x${image.height}`, { field: 'mask' });
  }
  let base: sharp.Sharp;
  if (mask && opts.marks === 'white') {
    base = sharp(mask.data).flatten({ background: '#000000' }).greyscale();
    if (opts.invert) base = base.negate({ alpha: false });
  } else {
    const source = mask ?? image;
    if (!source.hasAlpha) {
      const { field, message } = opts.noAlpha(mask ? 'mask' : 'image');
      throw new ServiceError('invalid_mask_image', message, { field });
    }
    base = sharp(await sharp(source.data).ensureAlpha().extractChannel(3).negate().png().toBuffer());
  }
  const grow = opts.grow ?? 0;
  const blur = opts.blur ?? 0;
  if (grow > 0) base = sharp(await base.png().toBuffer()).dilate(grow).blur(Math.max(0.3, grow / 2));
  else if (blur > 0) base = sharp(await base.png().toBuffer()).blur(Math.max(0.3, blur / 2));
  return base.png().toBuffer();
}
