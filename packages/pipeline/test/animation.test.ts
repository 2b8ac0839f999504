/**
 * Animations on tiny-sd: what a person sees (a red circle travelling left to right on blue), the files
 * (animated WebP and GIF pages and delays, MP4 through ffmpeg), coherence of feedback against travel,
 * and a resumed animation drawing the frames the whole one draws.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { animate, type AnimateRequest, animationEncoder, ffmpegEncoders, frameSpan, type Keyframe, slerp } from '../src';
import { loadPipeline } from '../src/families';
import type { DiffusionPipeline } from '../src/pipeline';
import { NormalRng } from '../src/rng';
import type { GeneratedImage } from '../src/types';
import { isBlue, meanColour, pixels } from './images';

/** Debian's ffmpeg (.ci/run installs it); without it the MP4 check cannot run here, and the API's 400 is tested instead. */
const HAS_FFMPEG = ['ffmpeg', 'ffprobe'].every((bin) => spawnSync(bin, ['-version']).status === 0);

let pipeline: DiffusionPipeline;
beforeAll(async () => {
  pipeline = await loadPipeline('../shared/models/tiny-sd');
});

const LEFT = 'a large red circle at the left on a blue background';
const RIGHT = 'a large red circle at the right on a blue background';

function circleTravel(mode: 'travel' | 'feedback', frames = 12): Omit<AnimateRequest, 'onFrame'> {
  const keyframes: Keyframe[] = [
    { frame: 0, prompts: [{ text: LEFT }], seed: 7 },
    { frame: frames - 1, prompts: [{ text: RIGHT }], seed: 7 },
  ];
  return { keyframes, frames, interpolation: 'linear', mode, strength: 0.5, steps: 20, cfgScale: 7, width: 128, height: 128 };
}

async function run(req: Omit<AnimateRequest, 'onFrame'>): Promise<GeneratedImage[]> {
  const frames: GeneratedImage[] = [];
  await animate(pipeline, { ...req, onFrame: async (i, image) => void (frames[i] = image) });
  return frames;
}

/** The x of the red pixels' centroid, 0..1. */
async function redCentroidX(png: Buffer): Promise<number> {
  const img = await pixels(png);
  let sum = 0;
  let n = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const k = (y * img.width + x) * 3;
      if (img.data[k] > 140 && img.data[k + 1] < 100 && img.data[k + 2] < 100) {
        sum += x;
        n++;
      }
    }
  }
  return n ? sum / n / img.width : Number.NaN;
}

/** Mean absolute difference of consecutive frames, 0..1. */
async function neighbourDifference(frames: GeneratedImage[]): Promise<number> {
  const decoded = await Promise.all(frames.map((f) => pixels(f.data)));
  let total = 0;
  for (let i = 1; i < decoded.length; i++) {
    let d = 0;
    for (let k = 0; k < decoded[i].data.length; k++) d += Math.abs(decoded[i].data[k] - decoded[i - 1].data[k]);
    total += d / decoded[i].data.length / 255;
  }
  return total / (decoded.length - 1);
}

describe('animate', () => {
  let travel: GeneratedImage[];
  beforeAll(async () => {
    travel = await run(circleTravel('travel'));
  });

  it('travel: the red circle moves from left to right over blue, frame by frame', async () => {
    expect(travel).toHaveLength(12);
    const xs = await Promise.all(travel.map((f) => redCentroidX(f.data)));
    for (let i = 1; i < xs.length; i++) expect(xs[i]).toBeGreaterThanOrEqual(xs[i - 1] - 0.02);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(xs.slice(8)) - mean(xs.slice(0, 4))).toBeGreaterThan(0.25);
    for (const f of travel) {
      const img = await pixels(f.data);
      // the background (top and bottom edges' middles) stays blue
      expect(isBlue(meanColour(img, 56, 0, 12))).toBe(true);
      expect(isBlue(meanColour(img, 56, 116, 12))).toBe(true);
    }
  });

  it('frame 0 is the still of the first keyframe, and the last frame the still of the last', async () => {
    const first = await pipeline.generate({ prompts: [{ text: LEFT }], seed: 7, steps: 20, cfgScale: 7, width: 128, height: 128 });
    const last = await pipeline.generate({ prompts: [{ text: RIGHT }], seed: 7, steps: 20, cfgScale: 7, width: 128, height: 128 });
    expect((await pixels(travel[0].data)).data.equals((await pixels(first.images[0].data)).data)).toBe(true);
    expect((await pixels(travel[11].data)).data.equals((await pixels(last.images[0].data)).data)).toBe(true);
  });

  it('batching does not change a frame, and a resumed animation draws the frames the whole one draws', async () => {
    const alone = await run({ ...circleTravel('travel'), batch: 1 });
    for (let i = 0; i < 12; i++) expect((await pixels(alone[i].data)).data.equals((await pixels(travel[i].data)).data)).toBe(true);
    const resumed: GeneratedImage[] = [];
    await animate(pipeline, { ...circleTravel('travel'), done: 7, onFrame: async (i, image) => void (resumed[i] = image) });
    expect(Object.keys(resumed).map(Number)).toEqual([7, 8, 9, 10, 11]);
    expect((await pixels(resumed[9].data)).data.equals((await pixels(travel[9].data)).data)).toBe(true);
  });

  it('feedback: neighbouring frames differ less than travel frames at the same settings, and resume from the last frame', async () => {
    const feedback = await run(circleTravel('feedback'));
    const [f, t] = [await neighbourDifference(feedback), await neighbourDifference(travel)];
    expect(f).toBeLessThan(t);
    const resumed: GeneratedImage[] = [];
    await animate(pipeline, { ...circleTravel('feedback'), done: 6, lastFrame: feedback[5].data, onFrame: async (i, image) => void (resumed[i] = image) });
    expect((await pixels(resumed[11].data)).data.equals((await pixels(feedback[11].data)).data)).toBe(true);
  });

  it('progress counts steps across all frames and the frames done', async () => {
    const seen: { step: number; steps: number; framesDone: number }[] = [];
    await animate(pipeline, { ...circleTravel('travel', 5), steps: 10, batch: 2, onFrame: async () => {}, onProgress: (p) => seen.push(p) });
    expect(seen.at(-1)).toMatchObject({ step: 50, steps: 50, framesDone: 5 });
    for (let i = 1; i < seen.length; i++) expect(seen[i].step).toBeGreaterThanOrEqual(seen[i - 1].step);
  });

  it('a canceled animation stops between steps', async () => {
    const controller = new AbortController();
    let made = 0;
    const run = animate(pipeline, {
      ...circleTravel('travel'),
      batch: 2,
      signal: controller.signal,
      onFrame: async () => {
        if (++made === 2) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'canceled' });
    expect(made).toBe(2);
  });

  it('keyframes: spans, holding after the last, and mistakes refused', async () => {
    const keys: Keyframe[] = [{ frame: 0, prompts: [{ text: 'a' }], seed: 1 }, { frame: 4, prompts: [{ text: 'b' }], seed: 2 }];
    expect(frameSpan(keys, 2).t).toBe(0.5);
    expect(frameSpan(keys, 6)).toMatchObject({ from: keys[1], to: keys[1], t: 0 });
    const bad = (keyframes: Keyframe[]) => animate(pipeline, { ...circleTravel('travel'), keyframes, onFrame: async () => {} });
    await expect(bad([{ ...keys[0], frame: 1 }])).rejects.toMatchObject({ code: 'invalid_keyframes' });
    await expect(bad([keys[1], keys[0]])).rejects.toMatchObject({ code: 'invalid_keyframes' });
    await expect(bad([keys[0], { ...keys[1], frame: 12 }])).rejects.toMatchObject({ code: 'invalid_keyframes' });
  });

  it('slerp keeps the norm of Gaussian noise between two seeds, where lerp shrinks it', () => {
    const a = new NormalRng(1).randn(4096);
    const b = new NormalRng(2).randn(4096);
    const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    const mid = slerp(0.5, a, b);
    expect(norm(mid) / norm(a)).toBeGreaterThan(0.97);
    expect(slerp(0.3, a, a)).toEqual(a);
  });
});

describe('animation files', () => {
  let frames: Buffer[];
  beforeAll(async () => {
    frames = (await run({ ...circleTravel('travel', 6), steps: 10 })).map((f) => f.data);
  });

  async function encode(format: 'webp' | 'gif' | 'mp4', loop = true) {
    const encoder = animationEncoder({ format, width: 128, height: 128, fps: 12, loop });
    for (const f of frames) await encoder.add(f);
    return encoder.finish();
  }

  it('animated WebP: every frame a page, at the asked fps, looping or not', async () => {
    const file = await encode('webp');
    const meta = await sharp(file, { animated: true }).metadata();
    expect(meta).toMatchObject({ format: 'webp', pages: 6, pageHeight: 128, width: 128, loop: 0 });
    expect(meta.delay).toEqual(new Array(6).fill(83));
    expect((await sharp(await encode('webp', false), { animated: true }).metadata()).loop).toBe(1);
    // page 3 is frame 3 (lossy: close, not equal)
    const page = await sharp(file, { page: 3 }).removeAlpha().raw().toBuffer();
    const original = (await pixels(frames[3])).data;
    let diff = 0;
    for (let k = 0; k < page.length; k++) diff += Math.abs(page[k] - original[k]);
    expect(diff / page.length).toBeLessThan(6);
  });

  it('GIF: every frame a page, the delay in hundredths of a second', async () => {
    const meta = await sharp(await encode('gif'), { animated: true }).metadata();
    expect(meta).toMatchObject({ format: 'gif', pages: 6, pageHeight: 128, loop: 0 });
    expect(meta.delay).toEqual(new Array(6).fill(80));
  });

  it.runIf(HAS_FFMPEG)('MP4 through ffmpeg: its frames and fps read back with ffprobe', async () => {
    expect((await ffmpegEncoders()).formats).toEqual(['mp4']);
    const path = join(mkdtempSync(join(tmpdir(), 'sdq-test-')), 'a.mp4');
    writeFileSync(path, await encode('mp4'));
    const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,nb_read_frames,r_frame_rate,width,height', '-of', 'json', path]).toString());
    expect(probe.streams[0]).toMatchObject({ codec_name: 'h264', nb_read_frames: '6', r_frame_rate: '12/1', width: 128, height: 128 });
  });

  it('an ffmpeg that is not there is said, not thrown', async () => {
    expect(await ffmpegEncoders('/nonexistent/ffmpeg')).toMatchObject({ formats: [], problem: expect.stringContaining('/nonexistent/ffmpeg') });
  });
});
