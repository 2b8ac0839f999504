/**
 * Hires fix, as AUTOMATIC1111's txt2img runs it: a first pass at the requested size, an upscale, then an
 * image-to-image pass at the target size. The upscale is either of the latents themselves (the `Latent`
 * modes: the first pass is never decoded for the second, as torch's interpolate does it) or of the
 * pixels (Lanczos, Nearest, or an upscaler engine the caller provides), encoded again by the VAE. One
 * progress covers both passes; the signal stops either.
 */
import sharp from 'sharp';
import type { DiffusionPipeline } from './pipeline';
import { PipelineError } from './errors';
import type { GenerateRequest, GenerateResult, GeneratedImage, WeightedPrompt } from './types';

/** A1111's latent upscale modes (shared.latent_upscale_modes). Upscaling, its antialiased ones equal the others. */
export const LATENT_UPSCALE_MODES = ['Latent', 'Latent (antialiased)', 'Latent (bicubic)', 'Latent (bicubic antialiased)', 'Latent (nearest)', 'Latent (nearest-exact)'] as const;
/** A1111's plain pixel resizers. */
export const PIXEL_UPSCALERS = ['Lanczos', 'Nearest'] as const;

export interface HiresSpec {
  /** The target size (multiples the engine takes). */
  width: number;
  height: number;
  /** A latent mode, Lanczos, Nearest, or an upscaler engine's id (the caller's `pixelUpscale` runs it). */
  upscaler: string;
  /** The second pass's steps; default the first pass's. */
  steps?: number;
  /** How much the second pass changes the upscaled image (A1111's denoising_strength). */
  denoisingStrength: number;
  sampler?: string;
  /** The second pass's prompts; default the first pass's. */
  prompts?: WeightedPrompt[];
  /** What the PNG parameters say of the upscale (A1111's `Hires upscale: 2` or `Hires resize: WxH`). */
  label?: Record<string, string | number>;
}

/** An upscaler engine's run: a PNG to about width x height (the caller resizes it to the exact size after). */
export type PixelUpscale = (png: Buffer, width: number, height: number) => Promise<Buffer>;

/** Cubic convolution weight, a = -0.75 (torch's bicubic). */
function cubic(x: number): number {
  const a = -0.75;
  const t = Math.abs(x);
  if (t <= 1) return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1;
  if (t < 2) return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a;
  return 0;
}

/**
 * Latents [c, h, w] to [c, H, W] as torch.nn.functional.interpolate does (align_corners false): bilinear,
 * bicubic, nearest (floor(dst x scale)) or nearest-exact (floor((dst + 0.5) x scale)).
 */
export function upscaleLatents(latents: Float32Array, c: number, h: number, w: number, H: number, W: number, mode: string): Float32Array {
  const out = new Float32Array(c * H * W);
  const sy = h / H;
  const sx = w / W;
  const at = (ch: number, y: number, x: number) => latents[ch * h * w + Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))];
  const kind = mode.includes('nearest-exact') ? 'nearest-exact' : mode.includes('nearest') ? 'nearest' : mode.includes('bicubic') ? 'bicubic' : 'bilinear';
  for (let ch = 0; ch < c; ch++) {
    for (let Y = 0; Y < H; Y++) {
      for (let X = 0; X < W; X++) {
        let v: number;
        if (kind === 'nearest' || kind === 'nearest-exact') {
          const off = kind === 'nearest' ? 0 : 0.5;
          v = at(ch, Math.min(h - 1, Math.floor((Y + off) * sy)), Math.min(w - 1, Math.floor((X + off) * sx)));
        } else {
          const fy = (Y + 0.5) * sy - 0.5;
          const fx = (X + 0.5) * sx - 0.5;
          if (kind === 'bilinear') {
            const y0 = Math.max(0, Math.floor(fy));
            const x0 = Math.max(0, Math.floor(fx));
            const dy = Math.max(0, fy - y0);
            const dx = Math.max(0, fx - x0);
            v = (1 - dy) * ((1 - dx) * at(ch, y0, x0) + dx * at(ch, y0, x0 + 1)) + dy * ((1 - dx) * at(ch, y0 + 1, x0) + dx * at(ch, y0 + 1, x0 + 1));
          } else {
            const y0 = Math.floor(fy);
            const x0 = Math.floor(fx);
            v = 0;
            for (let j = -1; j <= 2; j++) {
              const wy = cubic(fy - (y0 + j));
              for (let i = -1; i <= 2; i++) v += wy * cubic(fx - (x0 + i)) * at(ch, y0 + j, x0 + i);
            }
          }
        }
        out[ch * H * W + Y * W + X] = v;
      }
    }
  }
  return out;
}

/** Whether an upscaler name is a latent mode, one of the pixel resizers, or else (an engine's id). */
export function upscalerKind(name: string): 'latent' | 'pixel' | 'engine' {
  if ((LATENT_UPSCALE_MODES as readonly string[]).includes(name)) return 'latent';
  if ((PIXEL_UPSCALERS as readonly string[]).includes(name)) return 'pixel';
  return 'engine';
}

/** Runs both passes: the first at the request's size, the second at the target's, one image at a time. */
export async function hiresFix(pipeline: DiffusionPipeline, req: GenerateRequest & { hires: HiresSpec }, pixelUpscale?: PixelUpscale): Promise<GenerateResult> {
  const started = performance.now();
  const { hires, onProgress, ...first } = req;
  const kind = upscalerKind(hires.upscaler);
  if (kind === 'engine' && !pixelUpscale) throw new PipelineError('unsupported_mode', `hires upscaler ${hires.upscaler} is not a latent mode (${LATENT_UPSCALE_MODES.join(', ')}), ${PIXEL_UPSCALERS.join(' or ')}, nor an upscaler here`);
  const r = pipeline.checkInputs(first);
  const target = pipeline.checkInputs({ ...first, width: hires.width, height: hires.height, steps: hires.steps ?? r.steps, sampler: hires.sampler ?? first.sampler });
  const samples = r.samples;
  const total = r.steps + samples * target.steps;
  const report = (done: number, part: number, p: { step: number; total: number }) => onProgress?.({ step: done + Math.round((p.step / p.total) * part), total, elapsedMs: performance.now() - started });

  // the first pass: not checked by the safety checker (its images are not returned), its latents kept for a latent upscale
  const pass1 = await pipeline.generate({ ...first, outputFormat: 'png', safety: 'off', keepLatents: kind === 'latent', onProgress: (p) => report(0, r.steps, p) });
  const images: GeneratedImage[] = [];
  let onnxMs = pass1.timings.onnxMs;
  const factor = pipeline.model.vaeScaleFactor;
  for (const [i, image] of pass1.images.entries()) {
    const upscaled: Pick<GenerateRequest, 'initImage' | 'initLatents'> =
      kind === 'latent'
        ? { initLatents: upscaleLatents(image.latents!, pipeline.model.latentChannels, r.height / factor, r.width / factor, hires.height / factor, hires.width / factor, hires.upscaler) }
        : { initImage: await resized(kind === 'engine' ? await pixelUpscale!(image.data, hires.width, hires.height) : image.data, hires.width, hires.height, hires.upscaler === 'Nearest' ? 'nearest' : 'lanczos3') };
    const pass2 = await pipeline.generate({
      ...first,
      ...upscaled,
      prompts: hires.prompts ?? first.prompts,
      width: hires.width,
      height: hires.height,
      steps: target.steps,
      sampler: hires.sampler ?? first.sampler,
      samples: 1,
      seed: image.seed,
      imageStrength: 1 - hires.denoisingStrength,
      parametersExtra: { ...(hires.label ?? {}), 'Hires steps': target.steps, 'Hires upscaler': hires.upscaler, 'First pass size': `${r.width}x${r.height}` },
      onProgress: (p) => report(r.steps + i * target.steps, target.steps, p),
    });
    onnxMs += pass2.timings.onnxMs;
    images.push(pass2.images[0]);
  }
  return { images, truncatedTokens: pass1.truncatedTokens, timings: { totalMs: performance.now() - started, onnxMs }, runs: pass1.runs + images.length };
}

async function resized(png: Buffer, width: number, height: number, kernel: 'nearest' | 'lanczos3'): Promise<Buffer> {
  return sharp(png).removeAlpha().resize(width, height, { fit: 'fill', kernel }).png().toBuffer();
}
