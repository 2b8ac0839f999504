/**
 * End to end over HTTP with S3 storage (s3rver): Stability-style calls, async jobs with SSE, cancel,
 * several workers on one queue and engine routing. Real Redis, real tiny models, real workers.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { startTestS3, type TestS3 } from '../support/s3';
import { authed, readEvents, type Service, startService, startTestWorker, type TestWorker, textToImageBody, waitFor } from './support';

describe('the service with S3 storage', () => {
  let redis: TestRedis;
  let s3: TestS3;
  let service: Service;
  let worker: TestWorker | undefined;
  let key: string;
  let png: Buffer;

  const post = (path: string, body: string | FormData, headers: Record<string, string> = {}) =>
    fetch(`${service.url}${path}`, { method: 'POST', body, headers: authed(key, typeof body === 'string' ? { 'content-type': 'application/json', ...headers } : headers) });
  const getJob = async (id: string) => (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json();
  const submit = async (extra: Record<string, unknown> = {}) => {
    const res = await post('/v1/generation/tiny-sd/text-to-image', textToImageBody(extra), { prefer: 'respond-async' });
    expect(res.status).toBe(202);
    return (await res.json()) as { id: string; status: string; urls: { events: string; cancel: string } };
  };
  const form = (fields: Record<string, string | Buffer>) => {
    const body = new FormData();
    for (const [name, value] of Object.entries(fields)) {
      if (typeof value === 'string') body.append(name, value);
      else body.append(name, new File([new Uint8Array(value)], `${name}.png`, { type: 'image/png' }));
    }
    return body;
  };

  beforeAll(async () => {
    [redis, s3] = await Promise.all([startTestRedis(), startTestS3()]);
    service = await startService(redis, { s3 });
    worker = await startTestWorker(service);
    key = await service.apiKey();
  });
  afterAll(async () => {
    await worker?.close(1000);
    await service?.close();
    await Promise.all([redis?.close(), s3?.close()]);
  });

  it('answers a Stability text-to-image call in JSON', async () => {
    const res = await post('/v1/generation/tiny-sd/text-to-image', textToImageBody());
    expect(res.status).toBe(200);
    const body = (await res.json()) as { artifacts: { base64: string; seed: number; finishReason: string }[] };
    expect(body.artifacts).toHaveLength(1);
    expect(body.artifacts[0]).toMatchObject({ seed: 42, finishReason: 'SUCCESS' });
    png = Buffer.from(body.artifacts[0].base64, 'base64');
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 128, 128]);
  });

  it('answers a Stability text-to-image call in PNG, the same image for the same seed', async () => {
    const res = await post('/v1/generation/tiny-sd/text-to-image', textToImageBody(), { accept: 'image/png' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^image\/png/);
    expect(res.headers.get('seed')).toBe('42');
    expect(res.headers.get('finish-reason')).toBe('SUCCESS');
    expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
  });

  it('runs image-to-image from a multipart upload', async () => {
    const res = await post(
      '/v1/generation/tiny-sd/image-to-image',
      form({ init_image: png, 'text_prompts[0][text]': 'a yellow circle on a blue background', 'text_prompts[0][weight]': '1', image_strength: '0.5', steps: '10', seed: '7' }),
      { accept: 'image/png' },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('seed')).toBe('7');
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([128, 128]);
  });

  it('runs masking from a multipart upload, keeping the pixels outside the mask', async () => {
    // Left half white (repaint), right half black (keep).
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000000' } })
      .composite([{ input: { create: { width: 64, height: 128, channels: 3, background: '#ffffff' } }, left: 0, top: 0 }])
      .png()
      .toBuffer();
    const res = await post(
      '/v1/generation/tiny-sd/image-to-image/masking',
      form({ init_image: png, mask_image: mask, mask_source: 'MASK_IMAGE_WHITE', 'text_prompts[0][text]': 'a green square', steps: '10', seed: '3' }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { artifacts: { base64: string }[] };
    const out = await sharp(Buffer.from(body.artifacts[0].base64, 'base64')).raw().toBuffer({ resolveWithObject: true });
    const orig = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const at = (img: typeof out, x: number, y: number) => [...img.data.subarray((y * img.info.width + x) * img.info.channels, (y * img.info.width + x) * img.info.channels + 3)];
    expect(at(out, 120, 64)).toEqual(at(orig, 120, 64));
  });

  it('upscales a multipart upload on the upscale engine', async () => {
    const res = await post('/v1/generation/tiny-upscaler-x2/image-to-image/upscale', form({ image: png }), { accept: 'image/png' });
    expect(res.status).toBe(200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([256, 256]);
  });

  it("refuses an upscale width beyond the engine's factor (or below the image) at submission, with the range: no job, no charge", async () => {
    const jobsBefore = ((await (await fetch(`${service.url}/v1/jobs?limit=100`, { headers: authed(key) })).json()) as { data: unknown[] }).data.length;
    for (const [width, got] of [['512', 512], ['64', 64]] as const) {
      const res = await post('/v1/generation/tiny-upscaler-x2/image-to-image/upscale', form({ image: png, width }), { prefer: 'respond-async' });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ name: 'invalid_height_or_width', message: `width: must be from 128 to 256 for tiny-upscaler-x2's x2 upscale of a 128x128 image (got ${got})` });
    }
    const jobsAfter = ((await (await fetch(`${service.url}/v1/jobs?limit=100`, { headers: authed(key) })).json()) as { data: unknown[] }).data.length;
    expect(jobsAfter).toBe(jobsBefore);
  });

  it('runs an async job: 202, SSE progress for every step to completion, the artifact downloadable from its presigned URL', async () => {
    const job = await submit({ steps: 12 });
    expect(['queued', 'running']).toContain(job.status);
    const events = await readEvents(job.urls.events, key);
    const names = events.map((e) => e.event);
    expect(names[names.length - 1]).toBe('completed');
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    // The stream may open after the first steps ran; from then on every step is there, once, in order.
    expect(steps.length).toBeGreaterThan(0);
    expect(names.filter((n) => n === 'started').length).toBeLessThanOrEqual(1);
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => 12 - steps.length + 1 + i));
    const done = events[events.length - 1].data;
    expect(done).toMatchObject({ id: job.id, status: 'succeeded', progress: { step: 12, steps: 12 } });
    expect(done.artifacts).toHaveLength(1);
    const url: string = done.artifacts[0].url;
    expect(url).toContain(s3.endpoint);
    expect(url).toContain('X-Amz-Signature');
    expect(url).toContain(`generations/${job.id}/0.png`);
    const download = await fetch(url);
    expect(download.status).toBe(200);
    expect((await sharp(Buffer.from(await download.arrayBuffer())).metadata()).width).toBe(128);
  });

  it('cancels a queued job (removed) and a running one (stopped within a step or two)', async () => {
    const running = await submit({ steps: 150, samples: 2 });
    const queued = await submit();
    // Wait until the first job is past a few steps.
    let stepAtCancel = 0;
    await readEvents(running.urls.events, key, (e) => e.event === 'progress' && e.data.step >= 3 && ((stepAtCancel = e.data.step), true));

    const cancelQueued = await fetch(queued.urls.cancel, { method: 'POST', headers: authed(key) });
    expect(cancelQueued.status).toBe(200);
    expect(await cancelQueued.json()).toMatchObject({ id: queued.id, status: 'canceled' });

    const cancelRunning = await fetch(running.urls.cancel, { method: 'POST', headers: authed(key) });
    expect(cancelRunning.status).toBe(202);
    // The step reached when the API had signalled the worker.
    const atCancel: number = (await cancelRunning.json()).progress.step;
    expect(atCancel).toBeGreaterThanOrEqual(stepAtCancel);
    const ended = await waitFor(async () => {
      const j = await getJob(running.id);
      return j.status !== 'running' && j;
    }, 'the running job to stop');
    expect(ended.status).toBe('canceled');
    expect(ended.error).toEqual({ name: 'canceled', message: 'the job was canceled' });
    // At most the step in flight finishes after the signal.
    expect(ended.progress.step).toBeLessThanOrEqual(atCancel + 1);
    expect(ended.progress.step).toBeLessThan(150);
    // Canceling a finished job is a conflict.
    expect((await fetch(running.urls.cancel, { method: 'POST', headers: authed(key) })).status).toBe(409);
    expect(worker!.jobs).not.toContain(queued.id);
  });

  it('shares one engine queue between two workers', async () => {
    const second = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    try {
      const before = worker!.jobs.length;
      const jobs = await Promise.all(Array.from({ length: 6 }, () => submit({ steps: 20 })));
      for (const job of jobs) await readEvents(job.urls.events, key, (e) => e.event === 'completed');
      const statuses = await Promise.all(jobs.map(async (j) => (await getJob(j.id)).status));
      expect(statuses).toEqual(jobs.map(() => 'succeeded'));
      const ran = [...worker!.jobs.slice(before), ...second.jobs];
      // Every job ran once, and both workers took some.
      expect(ran.sort()).toEqual(jobs.map((j) => j.id).sort());
      expect(second.jobs.length).toBeGreaterThan(0);
      expect(worker!.jobs.length - before).toBeGreaterThan(0);
    } finally {
      await second.close(5000);
    }
  });

  it('routes jobs by engine: a worker restricted to one engine never gets another engine\'s jobs', async () => {
    await worker!.close(5000);
    worker = undefined;
    const sd = await startTestWorker(service, { ENGINES: 'tiny-sd' });
    const up = await startTestWorker(service, { ENGINES: 'tiny-upscaler-x2' });
    try {
      expect([sd.engines, up.engines]).toEqual([['tiny-sd'], ['tiny-upscaler-x2']]);
      const generations = await Promise.all(Array.from({ length: 3 }, () => submit()));
      const upscale = await post('/v1/generation/tiny-upscaler-x2/image-to-image/upscale', form({ image: png }), { prefer: 'respond-async' });
      expect(upscale.status).toBe(202);
      const upJob = (await upscale.json()) as { id: string; urls: { events: string } };
      for (const job of [...generations, upJob]) await readEvents(job.urls.events, key, (e) => e.event === 'completed');
      // The generation worker may also drain what an earlier test left queued; what matters is that it
      // ran these and no upscale, and that the upscale worker ran the upscale and nothing else.
      expect(sd.jobs).toEqual(expect.arrayContaining(generations.map((j) => j.id)));
      expect(sd.jobs).not.toContain(upJob.id);
      expect(up.jobs).toEqual([upJob.id]);
      expect((await getJob(upJob.id)).status).toBe('succeeded');
    } finally {
      await Promise.all([sd.close(5000), up.close(5000)]);
    }
  });
});
