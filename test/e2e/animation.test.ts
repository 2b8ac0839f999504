/**
 * Animations through the whole service (API, Redis, a worker, tiny-sd): the red circle travelling left
 * to right as an animated WebP answered to `Accept: image/webp`, the job's frames as PNG artifacts and
 * its progress in frames; GIF and MP4 (ffprobe reads the frames and fps back); the price (frames x a
 * still); every keyframe mistake a 4xx with nothing held; a canceled animation charging nothing (the
 * ledger shows the hold released); a worker killed mid-animation: the next one resumes from the stored
 * frames and the job is charged once. A worker without ffmpeg: mp4 is a 400 at submission.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, balanceOf, bluish, type ChildWorker, readEvents, redish, rgbOf, type Service, spawnWorker, type Stack, startService, startStack, waitFor } from './support';

const LEFT = 'a large red circle at the left on a blue background';
const RIGHT = 'a large red circle at the right on a blue background';
const HAS_FFMPEG = ['ffmpeg', 'ffprobe'].every((bin) => spawnSync(bin, ['-version']).status === 0);

function circleBody(extra: Record<string, unknown> = {}) {
  return {
    keyframes: [
      { frame: 0, text_prompts: [{ text: LEFT }], seed: 7 },
      { frame: 11, text_prompts: [{ text: RIGHT }], seed: 7 },
    ],
    frames: 12,
    steps: 20,
    mode: 'travel',
    ...extra,
  };
}

type Job = { id: string; status: string; artifacts: { url: string; content_type: string; seed: number; width: number }[]; progress: { step: number; steps: number; frames_done?: number; frames?: number } | null; credits_charged: number | null; params: { animation?: Record<string, unknown> }; urls: { events: string } };

async function post(service: Service, key: string, body: unknown, headers: Record<string, string> = {}, query = '') {
  return fetch(`${service.url}/v1/generation/tiny-sd/animation${query}`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', ...headers }), body: JSON.stringify(body) });
}

async function jobOf(service: Service, key: string, id: string): Promise<Job> {
  return (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as Job;
}

async function finished(service: Service, key: string, id: string, timeoutMs = 120_000): Promise<Job> {
  return waitFor(async () => {
    const job = await jobOf(service, key, id);
    return ['succeeded', 'failed', 'canceled'].includes(job.status) && job;
  }, `animation ${id} to end`, timeoutMs);
}

/** The x of the red pixels' centroid, 0..1. */
async function redCentroidX(png: Buffer): Promise<number> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  let n = 0;
  for (let i = 0; i < info.width * info.height; i++) {
    if (redish([data[i * 3], data[i * 3 + 1], data[i * 3 + 2]])) {
      sum += i % info.width;
      n++;
    }
  }
  return sum / n / info.width;
}

describe('animations', () => {
  let stack: Stack;
  let key: string;
  beforeAll(async () => {
    stack = await startStack();
    key = await accountWith(stack.service, 'animator', 1000);
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('travel, answered as an animated WebP: 12 pages at 12 fps, the circle moving left to right over blue; the job lists the file and every frame', async () => {
    const before = await balanceOf(stack.service, key);
    const res = await post(stack.service, key, circleBody(), { accept: 'image/webp' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/webp');
    const file = Buffer.from(await res.arrayBuffer());
    const meta = await sharp(file, { animated: true }).metadata();
    expect(meta).toMatchObject({ format: 'webp', pages: 12, pageHeight: 128, width: 128, loop: 0 });
    expect(meta.delay).toEqual(new Array(12).fill(Math.round(1000 / 12)));

    const job = await jobOf(stack.service, key, res.headers.get('x-job-id')!);
    expect(job.status).toBe('succeeded');
    expect(job.artifacts).toHaveLength(13);
    expect(job.artifacts[0]).toMatchObject({ content_type: 'image/webp', seed: 7, width: 128 });
    expect(job.artifacts.slice(1).every((a) => a.content_type === 'image/png')).toBe(true);
    expect(job.params.animation).toMatchObject({ frames: 12, mode: 'travel', interpolation: 'linear', fps: 12, format: 'webp', loop: true, strength: 0.5 });
    expect(job.progress).toMatchObject({ frames_done: 12, frames: 12 });
    const frames = await Promise.all(job.artifacts.slice(1).map(async (a) => Buffer.from(await (await fetch(a.url)).arrayBuffer())));
    const xs = await Promise.all(frames.map(redCentroidX));
    for (let i = 1; i < xs.length; i++) expect(xs[i]).toBeGreaterThanOrEqual(xs[i - 1] - 0.02);
    expect((xs[8] + xs[9] + xs[10] + xs[11]) / 4 - (xs[0] + xs[1] + xs[2] + xs[3]) / 4).toBeGreaterThan(0.25);
    for (const frame of frames) {
      const rgb = await rgbOf(frame);
      expect(bluish(rgb.at(64, 2))).toBe(true);
      expect(bluish(rgb.at(64, 125))).toBe(true);
    }
    // the file's page 5 is frame 5 (lossy WebP: close)
    const page = await rgbOf(await sharp(file, { page: 5 }).png().toBuffer());
    const png = await rgbOf(frames[5]);
    expect(Math.abs(page.at(30, 64)[0] - png.at(30, 64)[0])).toBeLessThan(30);
    // charged as 12 stills of its size and steps
    const still = (await (await fetch(`${stack.service.url}/v1/generation/tiny-sd/text-to-image?dry_run=true`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ text_prompts: [{ text: LEFT }], steps: 20 }) })).json()) as { credits: number };
    expect(job.credits_charged).toBeCloseTo(still.credits * 12, 6);
    expect(before - (await balanceOf(stack.service, key))).toBeCloseTo(still.credits * 12, 6);
  });

  it('a dry run prices the frames and holds nothing; JSON gets the job at once, with its progress in frames', async () => {
    const dry = (await (await post(stack.service, key, circleBody({ frames: 30, keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }] }] }), {}, '?dry_run=true')).json()) as { credits: number; samples: number; kind: string };
    expect(dry).toMatchObject({ kind: 'animation', samples: 30 });
    const res = await post(stack.service, key, circleBody({ steps: 10, frames: 8, keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }] }, { frame: 7, text_prompts: [{ text: RIGHT }] }] }));
    expect(res.status).toBe(202);
    const job = (await res.json()) as Job;
    const events = await readEvents(job.urls.events, key, (e) => e.event === 'completed' || e.event === 'failed');
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data as Job['progress']);
    expect(progress.some((p) => p!.frames === 8 && p!.frames_done! >= 1 && p!.frames_done! < 8)).toBe(true);
    const done = await jobOf(stack.service, key, job.id);
    expect(done.status).toBe('succeeded');
    // seeds 0 are drawn at submission and recorded: a retry draws the same frames
    const seeds = (done.params.animation!.keyframes as { seed: number }[]).map((k) => k.seed);
    expect(seeds.every((s) => s > 0)).toBe(true);
  });

  it('GIF, and MP4 through ffmpeg: frames and fps read back', async () => {
    const gif = await post(stack.service, key, circleBody({ frames: 6, steps: 10, fps: 10, format: 'gif', keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed: 3 }] }), { accept: 'image/gif' });
    expect(gif.status).toBe(200);
    const meta = await sharp(Buffer.from(await gif.arrayBuffer()), { animated: true }).metadata();
    expect(meta).toMatchObject({ format: 'gif', pages: 6, loop: 0 });
    expect(meta.delay).toEqual(new Array(6).fill(100));
    if (!HAS_FFMPEG) return;
    const mp4 = await post(stack.service, key, circleBody({ frames: 6, steps: 10, fps: 24, format: 'mp4', loop: false, keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed: 3 }, { frame: 5, text_prompts: [{ text: RIGHT }], seed: 4 }] }), { accept: 'video/mp4' });
    expect([mp4.status, mp4.status === 200 ? '' : await mp4.text()]).toEqual([200, '']);
    expect(mp4.headers.get('content-type')).toBe('video/mp4');
    const path = join(mkdtempSync(join(tmpdir(), 'sdq-e2e-mp4-')), 'a.mp4');
    writeFileSync(path, Buffer.from(await mp4.arrayBuffer()));
    const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,nb_read_frames,r_frame_rate,width,height', '-of', 'json', path]).toString());
    expect(probe.streams[0]).toMatchObject({ codec_name: 'h264', nb_read_frames: '6', r_frame_rate: '24/1', width: 128, height: 128 });
  });

  it('keyframe, frame, size and format mistakes: a 4xx naming the field, nothing held', async () => {
    const before = await balanceOf(stack.service, key);
    const k = (frame: number, text = LEFT) => ({ frame, text_prompts: [{ text }] });
    const cases: [Record<string, unknown>, number, string, Record<string, string>?][] = [
      [{ keyframes: [k(0), k(5), k(3)] }, 400, 'invalid_keyframes'],
      [{ keyframes: [k(0), k(4), k(4)] }, 400, 'invalid_keyframes'],
      [{ keyframes: [k(0), k(12)] }, 400, 'invalid_keyframes'],
      [{ keyframes: [k(2), k(5)] }, 400, 'invalid_keyframes'],
      [{ keyframes: [] }, 400, 'invalid_keyframes'],
      [{ keyframes: [{ frame: 0, text_prompts: [] }] }, 400, 'invalid_prompts'],
      [{ frames: 121 }, 400, 'invalid_frames'],
      [{ frames: 1, keyframes: [k(0)] }, 400, 'invalid_frames'],
      [{ width: 100 }, 400, 'invalid_height_or_width'],
      [{ format: 'avi' }, 400, 'bad_request'],
      [{ fps: 61 }, 400, 'bad_request'],
      [{ mode: 'zoom' }, 400, 'bad_request'],
      [{ interpolation: 'cubic' }, 400, 'bad_request'],
      [{ strength: 1.5 }, 400, 'bad_request'],
      [{ format: 'gif' }, 406, 'invalid_accept', { accept: 'image/webp' }],
      [{}, 406, 'invalid_accept', { accept: 'image/png' }],
    ];
    for (const [extra, status, name, headers] of cases) {
      const res = await post(stack.service, key, { ...circleBody(), ...extra }, headers);
      const body = (await res.json()) as { name: string; message: string };
      expect([JSON.stringify(extra), res.status, body.name]).toEqual([JSON.stringify(extra), status, name]);
      expect(body.message.length).toBeGreaterThan(10);
    }
    expect(await balanceOf(stack.service, key)).toBe(before);
  });

  it('cancel mid-animation stops between steps and charges nothing: the ledger shows the hold released', async () => {
    const before = await balanceOf(stack.service, key);
    const res = await post(stack.service, key, circleBody({ frames: 60, steps: 30, keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed: 5 }] }), { prefer: 'respond-async' });
    const job = (await res.json()) as Job;
    await readEvents(job.urls.events, key, (e) => e.event === 'progress' && ((e.data as Job['progress'])?.frames_done ?? 0) >= 2);
    const canceled = await fetch(`${stack.service.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: authed(key) });
    expect([200, 202]).toContain(canceled.status);
    const done = await finished(stack.service, key, job.id);
    expect(done.status).toBe('canceled');
    expect(done.credits_charged).toBe(0);
    expect(done.progress!.frames_done!).toBeLessThan(60);
    expect(await balanceOf(stack.service, key)).toBe(before);
    const ledger = (await (await fetch(`${stack.service.url}/v1/user/ledger`, { headers: authed(key) })).json()) as { data: { job_id?: string; type: string; credits: number }[] };
    const entries = ledger.data.filter((e) => e.job_id === job.id).map((e) => e.type).sort();
    expect(entries).toEqual(['hold', 'release']);
  });
});

describe('an animation whose worker is killed', () => {
  let redis: TestRedis;
  let service: Service;
  const children: ChildWorker[] = [];
  beforeAll(async () => {
    redis = await startTestRedis();
    service = await startService(redis);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await service?.close();
    await redis?.close();
  });

  it('resumes on the next worker from the frames stored, completes once, and is charged once', async () => {
    const key = await accountWith(service, 'resumer', 1000);
    const first = spawnWorker(service, { ENGINES: 'tiny-sd' });
    children.push(first);
    await first.ready;
    const before = await balanceOf(service, key);
    const body = circleBody({ frames: 24, steps: 25, mode: 'feedback', keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed: 11 }, { frame: 23, text_prompts: [{ text: RIGHT }], seed: 11 }] });
    const job = (await (await post(service, key, body, { prefer: 'respond-async' })).json()) as Job;
    await readEvents(job.urls.events, key, (e) => e.event === 'progress' && ((e.data as Job['progress'])?.frames_done ?? 0) >= 4);
    expect(await first.kill('SIGKILL')).toBe(null);
    const second = spawnWorker(service, { ENGINES: 'tiny-sd' });
    children.push(second);
    const done = await finished(service, key, job.id, 180_000);
    expect(done.status).toBe('succeeded');
    expect(done.artifacts).toHaveLength(25);
    const resumed = second.lines.map((l) => (l.includes('animation resumed') ? (JSON.parse(l) as { frames_stored: number }) : undefined)).find(Boolean);
    expect(resumed!.frames_stored).toBeGreaterThanOrEqual(4);
    const meta = await sharp(Buffer.from(await (await fetch(done.artifacts[0].url)).arrayBuffer()), { animated: true }).metadata();
    expect(meta.pages).toBe(24);
    const dry = (await (await post(service, key, body, {}, '?dry_run=true')).json()) as { credits: number };
    expect(done.credits_charged).toBeCloseTo(dry.credits, 6);
    expect(before - (await balanceOf(service, key))).toBeCloseTo(dry.credits, 6);
  });
});

describe('a worker without ffmpeg', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workerEnv: { FFMPEG_PATH: '/nonexistent/ffmpeg' } });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('mp4 is a 400 at submission naming what is missing; webp still works', async () => {
    const key = await accountWith(stack.service, 'no-ffmpeg', 100);
    const before = await balanceOf(stack.service, key);
    const res = await post(stack.service, key, circleBody({ format: 'mp4' }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { name: string; message: string };
    expect(body.name).toBe('unsupported_format');
    expect(body.message).toContain('ffmpeg');
    expect(await balanceOf(stack.service, key)).toBe(before);
    const webp = await post(stack.service, key, circleBody({ frames: 3, steps: 10, keyframes: [{ frame: 0, text_prompts: [{ text: LEFT }], seed: 2 }] }), { accept: 'image/webp' });
    expect(webp.status).toBe(200);
  });
});
