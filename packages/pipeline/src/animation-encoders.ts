/**
 * Animation files written frame by frame, so that an animation of any length holds one frame of raw
 * pixels at a time: each frame is compressed as it arrives and only the compressed bytes are kept.
 *
 * - WebP: libwebp (through sharp) encodes each frame as a still; its VP8 chunk goes into an ANMF frame
 *   of an animated WebP container (the RIFF layout of Google's "WebP Container Specification").
 * - GIF: cgif (through sharp, with libimagequant's palette) encodes each frame as a still; its image
 *   block, with its palette as a local colour table, goes into one GIF89a with a NETSCAPE2.0 loop.
 * - MP4: an ffmpeg process (libx264, yuv420p, +faststart) reads raw RGB frames on its stdin.
 *
 * The containers are written here because sharp builds animations only from every frame at once.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { PipelineError } from './errors';

export type AnimationFileFormat = 'webp' | 'gif' | 'mp4';

export interface AnimationEncoderOptions {
  format: AnimationFileFormat;
  width: number;
  height: number;
  fps: number;
  /** webp, gif: play for ever (true) or once. */
  loop: boolean;
  /** mp4: the ffmpeg binary. Default `ffmpeg` (on PATH). */
  ffmpegPath?: string;
}

export interface AnimationEncoder {
  /** Adds the next frame (an encoded image of the animation's size: PNG as the pipeline makes it). */
  add(frame: Buffer): Promise<void>;
  /** The file, once every frame is added. */
  finish(): Promise<Buffer>;
  /** Drops what was written (an ffmpeg process, its temporary folder). */
  abort(): Promise<void>;
  readonly frames: number;
}

export function animationEncoder(opts: AnimationEncoderOptions): AnimationEncoder {
  if (opts.format === 'webp') return new WebpAnimation(opts);
  if (opts.format === 'gif') return new GifAnimation(opts);
  return new Mp4Animation(opts);
}

/** The raw RGB of a frame, checked against the animation's size. */
async function rgbOf(frame: Buffer, width: number, height: number): Promise<Buffer> {
  const { data, info } = await sharp(frame).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.width !== width || info.height !== height) throw new Error(`animation frame is ${info.width}x${info.height}, expected ${width}x${height}`);
  return data;
}

function uint24le(buf: Buffer, offset: number, value: number): void {
  buf.writeUIntLE(value, offset, 3);
}

/** One RIFF chunk: fourcc, little-endian size, payload, padded to an even length. */
function riffChunk(fourcc: string, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(fourcc, 0, 'latin1');
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat(payload.length % 2 ? [head, payload, Buffer.alloc(1)] : [head, payload]);
}

class WebpAnimation implements AnimationEncoder {
  private readonly parts: Buffer[] = [];
  frames = 0;
  constructor(private readonly opts: AnimationEncoderOptions) {}

  async add(frame: Buffer): Promise<void> {
    const { width, height, fps } = this.opts;
    const still = await sharp(await rgbOf(frame, width, height), { raw: { width, height, channels: 3 } }).webp({ quality: 90 }).toBuffer();
    // a still is RIFF....WEBP then its chunks: the bitstream chunks (VP8 / VP8L / ALPH) become the frame's data
    const data: Buffer[] = [];
    for (let p = 12; p + 8 <= still.length; ) {
      const fourcc = still.toString('latin1', p, p + 4);
      const size = still.readUInt32LE(p + 4);
      const padded = 8 + size + (size % 2);
      if (fourcc === 'VP8 ' || fourcc === 'VP8L' || fourcc === 'ALPH') data.push(still.subarray(p, p + padded));
      p += padded;
    }
    if (!data.length) throw new Error('libwebp wrote a still with no bitstream chunk');
    const header = Buffer.alloc(16);
    // x / 2 and y / 2 (0), width - 1, height - 1, duration (ms), flags: do not blend, no disposal
    uint24le(header, 6, width - 1);
    uint24le(header, 9, height - 1);
    uint24le(header, 12, Math.round(1000 / fps));
    header[15] = 0b10;
    this.parts.push(riffChunk('ANMF', Buffer.concat([header, ...data])));
    this.frames++;
  }

  async finish(): Promise<Buffer> {
    const { width, height, loop } = this.opts;
    const vp8x = Buffer.alloc(10);
    vp8x[0] = 0b10; // animation
    uint24le(vp8x, 4, width - 1);
    uint24le(vp8x, 7, height - 1);
    const anim = Buffer.alloc(6);
    anim.writeUInt32LE(0xffffffff, 0); // background: opaque white (BGRA)
    anim.writeUInt16LE(loop ? 0 : 1, 4); // 0 = for ever
    const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), riffChunk('VP8X', vp8x), riffChunk('ANIM', anim), ...this.parts]);
    const head = Buffer.alloc(8);
    head.write('RIFF', 0, 'latin1');
    head.writeUInt32LE(body.length, 4);
    return Buffer.concat([head, body]);
  }

  async abort(): Promise<void> {
    this.parts.length = 0;
  }
}

/** The data sub-blocks starting at p (each a length byte and that many bytes, ended by a 0): where they end. */
function skipSubBlocks(gif: Buffer, p: number): number {
  while (p < gif.length && gif[p] !== 0) p += gif[p] + 1;
  if (p >= gif.length) throw new Error('GIF still: data sub-blocks run past the end');
  return p + 1;
}

class GifAnimation implements AnimationEncoder {
  private readonly parts: Buffer[] = [];
  frames = 0;
  constructor(private readonly opts: AnimationEncoderOptions) {}

  async add(frame: Buffer): Promise<void> {
    const { width, height, fps } = this.opts;
    const still = await sharp(await rgbOf(frame, width, height), { raw: { width, height, channels: 3 } }).gif({ effort: 7 }).toBuffer();
    // GIF89a, logical screen descriptor (7 bytes), global colour table if its flag is set
    const screen = still[10];
    let p = 13;
    const globalTable = screen & 0x80 ? still.subarray(p, (p += 3 << ((screen & 7) + 1))) : undefined;
    while (p < still.length && still[p] === 0x21) p = skipSubBlocks(still, p + 2); // extensions
    if (still[p] !== 0x2c) throw new Error('GIF still: no image descriptor');
    const descriptor = Buffer.from(still.subarray(p, p + 10));
    p += 10;
    const packed = descriptor[9];
    let localTable: Buffer;
    if (packed & 0x80) {
      localTable = still.subarray(p, (p += 3 << ((packed & 7) + 1)));
    } else {
      if (!globalTable) throw new Error('GIF still: no colour table');
      localTable = globalTable;
      descriptor[9] = (packed & 0x40) | 0x80 | (screen & 7); // keep interlacing; the global table becomes the frame's own
    }
    const imageData = still.subarray(p, skipSubBlocks(still, p + 1)); // LZW minimum code size, then the data
    // graphic control extension: no disposal, the delay in hundredths of a second (browsers treat under 2 as 10)
    const control = Buffer.from([0x21, 0xf9, 0x04, 0x04, 0, 0, 0, 0x00]);
    control.writeUInt16LE(Math.max(2, Math.round(100 / fps)), 4);
    this.parts.push(Buffer.concat([control, descriptor, localTable, imageData]));
    this.frames++;
  }

  async finish(): Promise<Buffer> {
    const { width, height, loop } = this.opts;
    const screen = Buffer.alloc(13);
    screen.write('GIF89a', 0, 'latin1');
    screen.writeUInt16LE(width, 6);
    screen.writeUInt16LE(height, 8);
    screen[10] = 0x70; // no global colour table, 8-bit colour resolution
    const parts = [screen];
    if (loop) parts.push(Buffer.from([0x21, 0xff, 0x0b, ...Buffer.from('NETSCAPE2.0', 'latin1'), 0x03, 0x01, 0x00, 0x00, 0x00]));
    return Buffer.concat([...parts, ...this.parts, Buffer.from([0x3b])]);
  }

  async abort(): Promise<void> {
    this.parts.length = 0;
  }
}

class Mp4Animation implements AnimationEncoder {
  private process: ReturnType<typeof spawn> | undefined;
  private dir: string | undefined;
  private exited: Promise<number | null> | undefined;
  private stderr = '';
  private failure: Error | undefined;
  frames = 0;
  constructor(private readonly opts: AnimationEncoderOptions) {}

  private async start(): Promise<ReturnType<typeof spawn>> {
    const { width, height, fps, ffmpegPath = 'ffmpeg' } = this.opts;
    this.dir = await mkdtemp(join(tmpdir(), 'sdq-mp4-'));
    const child = spawn(
      ffmpegPath,
      ['-hide_banner', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0',
        '-c:v', 'libx264', '-preset', 'medium', '-crf', '18', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-y', join(this.dir, 'out.mp4')],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => {
        this.failure = new PipelineError('unsupported_mode', `mp4: could not run ${ffmpegPath} (${err.message}); install ffmpeg or set FFMPEG_PATH`);
        resolve(null);
      });
      child.on('close', (code) => resolve(code));
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-2000)));
    // a write after ffmpeg died fails here and is reported by the next add or finish
    child.stdin!.on('error', () => {});
    this.process = child;
    return child;
  }

  async add(frame: Buffer): Promise<void> {
    const rgb = await rgbOf(frame, this.opts.width, this.opts.height);
    const child = this.process ?? (await this.start());
    if (this.failure) throw this.failure;
    if (child.exitCode !== null) throw new Error(`ffmpeg exited (${child.exitCode}) before the last frame: ${this.stderr.trim()}`);
    if (!child.stdin!.write(rgb)) await new Promise<void>((resolve) => { child.stdin!.once('drain', resolve); child.once('close', () => resolve()); });
    this.frames++;
  }

  async finish(): Promise<Buffer> {
    if (!this.process) throw new Error('an mp4 needs at least one frame');
    this.process.stdin!.end();
    const code = await this.exited;
    try {
      if (this.failure) throw this.failure;
      if (code !== 0) throw new Error(`ffmpeg failed (exit ${code}): ${this.stderr.trim()}`);
      return await readFile(join(this.dir!, 'out.mp4'));
    } finally {
      await rm(this.dir!, { recursive: true, force: true });
    }
  }

  async abort(): Promise<void> {
    if (this.process && this.process.exitCode === null) {
      this.process.kill('SIGKILL');
      await this.exited;
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The animation formats an ffmpeg binary adds (mp4 when it has libx264), or none when it cannot run.
 * Asked once at a worker's start, which reports them so the API refuses mp4 where no worker can write it.
 */
export async function ffmpegEncoders(ffmpegPath = 'ffmpeg', timeoutMs = 10_000): Promise<{ formats: AnimationFileFormat[]; problem?: string }> {
  return new Promise((resolve) => {
    execFile(ffmpegPath, ['-hide_banner', '-encoders'], { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout) => {
      if (err) return resolve({ formats: [], problem: `${ffmpegPath} could not run (${(err as NodeJS.ErrnoException).code ?? err.message})` });
      if (!/\blibx264\b/.test(stdout)) return resolve({ formats: [], problem: `${ffmpegPath} has no libx264 encoder` });
      resolve({ formats: ['mp4'] });
    });
  });
}
