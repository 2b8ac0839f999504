/** What a person sees in a generated image: mean colours of its centre and corners. */
import sharp from 'sharp';

/** Decoded RGB8 pixels of an encoded image. */
export async function pixels(png: Buffer) {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

export type Rgb = [number, number, number];

/** Mean colour (0..1) of a square region. */
export function meanColour(img: { data: Buffer; width: number }, x0: number, y0: number, size: number): Rgb {
  const sum: Rgb = [0, 0, 0];
  for (let y = y0; y < y0 + size; y++) {
    for (let x = x0; x < x0 + size; x++) for (let c = 0; c < 3; c++) sum[c] += img.data[(y * img.width + x) * 3 + c];
  }
  return sum.map((s) => s / (size * size * 255)) as Rgb;
}

export const isRed = ([r, g, b]: Rgb) => r > 0.5 && g < 0.35 && b < 0.35;
export const isBlue = ([r, g, b]: Rgb) => b > 0.5 && r < 0.35 && g < 0.45;
export const isYellow = ([r, g, b]: Rgb) => r > 0.45 && g > 0.4 && g > 0.75 * r && b < 0.3;
export const isBlack = ([r, g, b]: Rgb) => r < 0.2 && g < 0.2 && b < 0.2;

export function centreAndCorners(img: { data: Buffer; width: number; height: number }) {
  const s = 12;
  return {
    centre: meanColour(img, img.width / 2 - s / 2, img.height / 2 - s / 2, s),
    corners: [
      meanColour(img, 0, 0, s),
      meanColour(img, img.width - s, 0, s),
      meanColour(img, 0, img.height - s, s),
      meanColour(img, img.width - s, img.height - s, s),
    ],
  };
}

