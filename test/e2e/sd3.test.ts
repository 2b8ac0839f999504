/**
 * Stable Diffusion 3 served like any engine: tiny-sd3 through the API, sync and async, by a worker that
 * serves tiny-sd, tiny-sdxl and tiny-sd3 at once, each from its own queue; listed with its family, priced
 * per image (Stability's SD3 medium figure), run with the family's defaults.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, readEvents, type Service, startService, startTestWorker, type TestWorker } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis);
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-sdxl,tiny-sd3' });
  // 3.5 credits a job.
  key = await accountWith(service, 'sd3', 100);
});
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

const t2i = (engine: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${service.url}/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    body: JSON.stringify({ seed: 42, text_prompts: [{ text: 'a red circle on a blue background' }], ...body }),
    headers: authed(key, { 'content-type': 'application/json', ...headers }),
  });

describe('tiny-sd3 through the API', () => {
  it('is listed with its family, its one sampler, its defaults and a flat per-image price', async () => {
    const list = (await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as {
      id: string;
      capabilities: { family: string; samplers: string[]; defaults: { steps: number }; workers: number };
      pricing: { per_image: number; flat: boolean; example: { credits: number } };
    }[];
    const sd3 = list.find((e) => e.id === 'tiny-sd3')!;
    expect(sd3.capabilities).toMatchObject({ family: 'stable-diffusion-3', samplers: ['FLOW_MATCH_EULER'], defaults: { steps: 28 }, workers: 1 });
    expect(sd3.pricing).toMatchObject({ per_image: 3.5, flat: true, example: { credits: 3.5 } });
  });

  it('answers a Stability sync call (PNG bytes) with the colours asked for', async () => {
    const res = await t2i('tiny-sd3', {}, { accept: 'image/png' });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('seed')).toBe('42');
    const { data, info } = await sharp(Buffer.from(await res.arrayBuffer())).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([128, 128]);
    const corner = [data[0], data[1], data[2]];
    expect(corner[2], `corner ${corner}`).toBeGreaterThan(corner[0] + 40);
    let red = 0;
    for (let i = 0; i < info.width * info.height; i++) if (data[i * 3] > 128 && data[i * 3 + 1] < 100 && data[i * 3 + 2] < 100) red++;
    expect(red / (info.width * info.height)).toBeGreaterThan(0.05);
  });

  it('runs async with per-step progress, 28 steps by default, charged 3.5 credits', async () => {
    const res = await t2i('tiny-sd3', {}, { prefer: 'respond-async' });
    expect(res.status).toBe(202);
    const job = (await res.json()) as { id: string; urls: { events: string } };
    const events = await readEvents(job.urls.events, key);
    const progress = events.filter((e) => e.event === 'progress');
    expect(progress.at(-1)?.data).toMatchObject({ step: 28, steps: 28 });
    const done = events.at(-1)!;
    expect(done.event).toBe('completed');
    expect(done.data).toMatchObject({ status: 'succeeded', credits_charged: 3.5 });
  });

  it('refuses a sampler of another family with the valid one, before any hold', async () => {
    const res = await t2i('tiny-sd3', { sampler: 'K_EULER' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ name: 'invalid_sampler', message: expect.stringContaining('valid samplers: FLOW_MATCH_EULER') });
    const sd = await t2i('tiny-sd', { sampler: 'FLOW_MATCH_EULER' });
    expect(sd.status).toBe(400);
  });

  it('one worker serves tiny-sd, tiny-sdxl and tiny-sd3 at once, each job from its own engine\'s queue', async () => {
    const ids = await Promise.all(
      ['tiny-sd', 'tiny-sdxl', 'tiny-sd3'].map(async (engine) => {
        const res = await t2i(engine, { steps: 10 }, { prefer: 'wait=60' });
        const job = (await res.json()) as { id: string; engine: string; status: string };
        expect(job).toMatchObject({ engine, status: 'succeeded' });
        return job.id;
      }),
    );
    for (const id of ids) expect(worker.jobs).toContain(id);
  });
});
