/**
 * Stable Diffusion XL served like any engine: tiny-sdxl through the API and a real worker, under its
 * own id and Stability's (ENGINE_ALIASES), for every sampler its family allows, with its price.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAMILIES } from '@sdq/pipeline/engines';

const SAMPLERS = FAMILIES.find((f) => f.id === 'stable-diffusion-xl')!.samplers;
import { centreAndCorners, isBlack, isBlue, isRed, isYellow, pixels } from '../../packages/pipeline/test/images';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, type Service, startService, startTestWorker, type TestWorker } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, { env: { ENGINE_ALIASES: 'stable-diffusion-xl-1024-v1-0=tiny-sdxl' } });
  worker = await startTestWorker(service, { ENGINES: 'tiny-sdxl' });
  // 0.9 to 1.5 credits a job: more than the 10 a test account usually gets.
  key = await accountWith(service, 'sdxl', 100);
});
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

const t2i = (engine: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${service.url}/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    body: JSON.stringify({ seed: 42, steps: 25, ...body }),
    headers: authed(key, { 'content-type': 'application/json', accept: 'image/png', ...headers }),
  });

describe('tiny-sdxl through the API', () => {
  it('is listed with its family, its alias and its price', async () => {
    const list = (await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; alias_of: string | null; capabilities: { family: string }; pricing: { per_image: number } }[];
    const sdxl = list.find((e) => e.id === 'tiny-sdxl')!;
    expect(sdxl.capabilities.family).toBe('stable-diffusion-xl');
    expect(sdxl.pricing.per_image).toBe(0.9);
    expect(list.find((e) => e.id === 'stable-diffusion-xl-1024-v1-0')).toMatchObject({ alias_of: 'tiny-sdxl' });
  });

  // The order-4 multistep samplers (PNDM, K_LMS) drift on this model below ~50 steps, as on tiny-sd.
  it.each(SAMPLERS)('%s: follows colour-and-shape prompts, through Stability\'s engine id', async (sampler) => {
    const steps = sampler === 'PNDM' || sampler === 'K_LMS' ? 50 : 25;
    const red = await t2i('stable-diffusion-xl-1024-v1-0', { text_prompts: [{ text: 'a red circle on a blue background' }], sampler, steps });
    expect(red.status, await red.clone().text()).toBe(200);
    const r = centreAndCorners(await pixels(Buffer.from(await red.arrayBuffer())));
    expect(r.centre, `centre ${r.centre}`).toSatisfy(isRed);
    for (const c of r.corners) expect(c).toSatisfy(isBlue);
    const yellow = await t2i('tiny-sdxl', { text_prompts: [{ text: 'a yellow square on a black background' }], sampler, steps });
    const y = centreAndCorners(await pixels(Buffer.from(await yellow.arrayBuffer())));
    expect(y.centre, `centre ${y.centre}`).toSatisfy(isYellow);
    for (const c of y.corners) expect(c).toSatisfy(isBlack);
  });

  it('charges Stability\'s SDXL price, takes the micro-conditioning fields, and refuses a size outside the engine', async () => {
    const before = ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(key) })).json()) as { credits: number }).credits;
    const res = await t2i('tiny-sdxl', { text_prompts: [{ text: 'a red circle on a blue background' }], original_width: 256, original_height: 256, crop_top: 0, crop_left: 0, prompt_2: 'a red circle' }, { accept: 'application/json', prefer: 'wait=30' });
    const job = (await res.json()) as { status: string; credits_charged: number };
    expect(job).toMatchObject({ status: 'succeeded', credits_charged: 0.9 });
    const after = ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(key) })).json()) as { credits: number }).credits;
    expect(Math.round((before - after) * 1e6)).toBe(900_000);
    const big = await t2i('tiny-sdxl', { text_prompts: [{ text: 'a red circle' }], width: 1024, height: 1024 });
    expect(big.status).toBe(400);
    expect(((await big.json()) as { name: string; message: string })).toMatchObject({ name: 'invalid_height_or_width', message: expect.stringContaining('up to 512x512') });
  });
});
