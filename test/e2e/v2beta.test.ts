/**
 * Stability's v2beta Stable Image API on the embedded engines, through a real worker: multipart requests
 * as Stability's reference shows them, both `accept` values, the headers, the error shape, credits from
 * the v2beta price entries (charged once, refunded on failure), results polling, and images that follow
 * the prompt (a red circle on blue stays red on blue outside an inpainted mask; upscales double the size
 * and keep the colours).
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, bluish, redish, rgbOf, type Service, startService, startTestWorker, type TestWorker } from './support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis);
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd,tiny-sdxl,tiny-sd3,tiny-upscaler-x2' });
  key = await accountWith(service, 'v2beta', 1000);
}, 60_000);
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

type Part = string | { data: Buffer; type: string; filename?: string };

/** A multipart POST as Stability's samples send it (FormData: text fields, files as blobs). */
function post(path: string, parts: Record<string, Part>, headers: Record<string, string> = {}, apiKey = key) {
  const form = new FormData();
  for (const [name, value] of Object.entries(parts)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value.data], { type: value.type }), value.filename ?? `${name}.png`);
  }
  return fetch(`${service.url}${path}`, { method: 'POST', body: form, headers: authed(apiKey, headers) });
}


async function balance(apiKey = key): Promise<number> {
  return ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(apiKey) })).json()) as { credits: number }).credits;
}

let redCircle: Buffer;

describe('generate', () => {
  it('core: image/* gives the PNG with finish-reason and seed headers, at 1:1 = the engine native 128x128, following the prompt', async () => {
    const before = await balance();
    const res = await post('/v2beta/stable-image/generate/core', { prompt: 'a red circle on a blue background', seed: '42', output_format: 'png' }, { accept: 'image/*' });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('finish-reason')).toBe('SUCCESS');
    expect(res.headers.get('seed')).toBe('42');
    redCircle = Buffer.from(await res.arrayBuffer());
    const img = await rgbOf(redCircle);
    expect([img.width, img.height]).toEqual([128, 128]);
    expect(img.at(64, 64), 'centre').toSatisfy(redish);
    expect(img.at(4, 4), 'corner').toSatisfy(bluish);
    // Stability's Core figure: 3 credits a call, whatever the steps
    expect(before - (await balance())).toBeCloseTo(3, 6);
  });

  it('core: accept application/json gives {image, finish_reason, seed}; seed 0 picks one and reports it', async () => {
    const res = await post('/v2beta/stable-image/generate/core', { prompt: 'a yellow square on a black background', output_format: 'jpeg' }, { accept: 'application/json' });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { image: string; finish_reason: string; seed: number };
    expect(body.finish_reason).toBe('SUCCESS');
    expect(Number.isInteger(body.seed) && body.seed > 0).toBe(true);
    expect((await sharp(Buffer.from(body.image, 'base64')).metadata()).format).toBe('jpeg');
  });

  it('aspect ratios map onto the engine sizes nearest its native area: 16:9 on tiny-sd is 192x128, on tiny-sdxl 1344x768 is Stability\'s', async () => {
    const res = await post('/v2beta/stable-image/generate/core?dry_run=true', { prompt: 'a red circle', aspect_ratio: '16:9' });
    expect(res.status, await res.clone().text()).toBe(200);
    const dry = (await res.json()) as { width: number; height: number; credits: number };
    expect(dry).toMatchObject({ width: 192, height: 128, credits: 3 });
    const ultra = (await (await post('/v2beta/stable-image/generate/ultra?dry_run=true', { prompt: 'a red circle', aspect_ratio: '9:21' })).json()) as { width: number; height: number; credits: number };
    expect(ultra).toMatchObject({ credits: 8 });
    // tiny-sdxl is native 128: the nine SDXL sizes apply only at 1024, so its own limits are used
    expect(ultra.height).toBeGreaterThan(ultra.width);
  });

  it('sd3: the models, the old names rerouted, image-to-image with image and strength', async () => {
    for (const [model, credits] of [['sd3.5-large', 6.5], ['sd3.5-large-turbo', 4], ['sd3.5-medium', 3.5], ['sd3.5-flash', 2.5], ['sd3-large', 6.5], ['sd3-medium', 3.5], ['sd3', 6.5]] as const) {
      const dry = (await (await post('/v2beta/stable-image/generate/sd3?dry_run=true', { prompt: 'a red circle', model })).json()) as { credits: number; engine: string };
      expect(dry, model).toMatchObject({ credits, engine: 'tiny-sd3' });
    }
    const res = await post('/v2beta/stable-image/generate/sd3', { prompt: 'a red circle on a blue background', model: 'sd3.5-medium', mode: 'image-to-image', image: { data: redCircle, type: 'image/png' }, strength: '0.4', seed: '7' });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('seed')).toBe('7');
    const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
    expect(img.at(64, 64), 'centre').toSatisfy(redish);
  });

  it('refuses what is wrong with a 400 in Stability\'s error shape, charging nothing', async () => {
    const before = await balance();
    for (const [path, parts, field] of [
      ['/v2beta/stable-image/generate/core', {}, 'prompt'],
      ['/v2beta/stable-image/generate/core', { prompt: 'x', aspect_ratio: '7:3' }, 'aspect_ratio'],
      ['/v2beta/stable-image/generate/core', { prompt: 'x', seed: '4294967295' }, 'seed'],
      ['/v2beta/stable-image/generate/core', { prompt: 'x', output_format: 'gif' }, 'output_format'],
      ['/v2beta/stable-image/generate/core', { prompt: 'x', style_preset: 'vaporwave' }, 'style_preset'],
      ['/v2beta/stable-image/generate/sd3', { prompt: 'x', model: 'sd4' }, 'model'],
      ['/v2beta/stable-image/generate/sd3', { prompt: 'x', mode: 'image-to-image' }, 'image'],
      ['/v2beta/stable-image/generate/sd3', { prompt: 'x', mode: 'image-to-image', image: { data: redCircle, type: 'image/png' } }, 'strength'],
      ['/v2beta/stable-image/upscale/fast', {}, 'image'],
    ] as [string, Record<string, Part>, string][]) {
      const res = await post(path, parts);
      expect(res.status, `${path} ${field}`).toBe(400);
      const body = (await res.json()) as { id: string; name: string; errors: string[] };
      expect(typeof body.id).toBe('string');
      expect(body.name).toMatch(/^bad_request|invalid_/);
      expect(body.errors.join(' '), `${path} ${field}`).toContain(field);
    }
    expect(await balance()).toBe(before);
    // a JSON body is not what v2beta takes; an unknown key is 401, in the same shape
    const json = await fetch(`${service.url}/v2beta/stable-image/generate/core`, { method: 'POST', body: '{"prompt":"x"}', headers: authed(key, { 'content-type': 'application/json' }) });
    expect(json.status).toBe(400);
    const anon = await post('/v2beta/stable-image/generate/core', { prompt: 'x' }, {}, 'sk-nope');
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as { errors: string[] }).errors).toHaveLength(1);
  });
});

describe('upscale and edit', () => {
  it('upscale/fast doubles the size (tiny-upscaler-x2) and keeps the colours', async () => {
    const before = await balance();
    const res = await post('/v2beta/stable-image/upscale/fast', { image: { data: redCircle, type: 'image/png' }, output_format: 'png' });
    expect(res.status, await res.clone().text()).toBe(200);
    const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
    expect([img.width, img.height]).toEqual([256, 256]);
    expect(img.at(128, 128), 'centre').toSatisfy(redish);
    expect(img.at(8, 8), 'corner').toSatisfy(bluish);
    expect(before - (await balance())).toBeCloseTo(1, 6);
    // one image type named outright is the bytes too; a type sdq cannot send is 406 in Stability's shape
    const png = await post('/v2beta/stable-image/upscale/fast', { image: { data: redCircle, type: 'image/png' } }, { accept: 'image/png' });
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    const text = await post('/v2beta/stable-image/upscale/fast', { image: { data: redCircle, type: 'image/png' } }, { accept: 'text/html' });
    expect(text.status).toBe(406);
    expect(((await text.json()) as { name: string; errors: string[] }).name).toBe('invalid_accept');
  });

  it('upscale/conservative doubles the size with the prompt, tile by tile, keeping the picture', async () => {
    const before = await balance();
    const res = await post('/v2beta/stable-image/upscale/conservative', { image: { data: redCircle, type: 'image/png' }, prompt: 'a red circle on a blue background', seed: '11' });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('seed')).toBe('11');
    const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
    expect([img.width, img.height]).toEqual([256, 256]);
    expect(img.at(128, 128), 'centre').toSatisfy(redish);
    for (const [x, y] of [[8, 8], [247, 8], [8, 247], [247, 247]]) expect(img.at(x, y), `corner (${x}, ${y})`).toSatisfy(bluish);
    expect(before - (await balance())).toBeCloseTo(25, 6);
  });

  it('upscale/creative is asynchronous: {id} at once, 202 in-progress, then the image; no seam where tiles meet', async () => {
    const res = await post('/v2beta/stable-image/upscale/creative', { image: { data: redCircle, type: 'image/png' }, prompt: 'a red circle on a blue background', creativity: '0.3', seed: '12' });
    expect(res.status, await res.clone().text()).toBe(200);
    const { id } = (await res.json()) as { id: string };
    expect(typeof id).toBe('string');
    let got: Response | undefined;
    let inProgress = 0;
    for (let i = 0; i < 600; i++) {
      got = await fetch(`${service.url}/v2beta/results/${id}`, { headers: authed(key, { accept: 'application/json' }) });
      if (got.status !== 202) break;
      inProgress++;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(inProgress, 'polled while in progress').toBeGreaterThan(0);
    expect(got!.status, await got!.clone().text()).toBe(200);
    const body = (await got!.json()) as { image: string; finish_reason: string; seed: number };
    expect(body).toMatchObject({ finish_reason: 'SUCCESS', seed: 12 });
    const png = Buffer.from(body.image, 'base64');
    const img = await rgbOf(png);
    expect([img.width, img.height]).toEqual([256, 256]);
    expect(img.at(128, 128), 'centre').toSatisfy(redish);
    expect(img.at(8, 8), 'corner').toSatisfy(bluish);
    // Tiles of 128 start at 0, 96 and 128, so tile edges fall at x = 95/96 and 127/128. In the background
    // bands above and below the circle, the step between neighbouring pixels there is no larger than
    // anywhere else in the band: the blend leaves no seam.
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const step = (x: number, y: number) => Math.max(...[0, 1, 2].map((c) => Math.abs(data[(y * info.width + x + 1) * 3 + c] - data[(y * info.width + x) * 3 + c])));
    let seam = 0;
    let elsewhere = 0;
    for (const y of [...Array(32).keys(), ...Array.from({ length: 32 }, (_, i) => 224 + i)]) {
      for (const x of [95, 127]) seam = Math.max(seam, step(x, y));
      for (const x of [20, 40, 60, 180, 200, 220]) elsewhere = Math.max(elsewhere, step(x, y));
    }
    expect(seam, `seam ${seam} vs elsewhere ${elsewhere}`).toBeLessThanOrEqual(elsewhere + 6);
  });

  it('inpaint repaints inside the mask only: outside it the red circle on blue stays red on blue', async () => {
    // repaint the top-left quarter (white = repaint) with a yellow square
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000000' } })
      .composite([{ input: await sharp({ create: { width: 48, height: 48, channels: 3, background: '#ffffff' } }).png().toBuffer(), left: 0, top: 0 }])
      .png()
      .toBuffer();
    const res = await post('/v2beta/stable-image/edit/inpaint', { image: { data: redCircle, type: 'image/png' }, mask: { data: mask, type: 'image/png' }, prompt: 'a yellow square on a black background', grow_mask: '0', seed: '3' });
    expect(res.status, await res.clone().text()).toBe(200);
    const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
    const original = await rgbOf(redCircle);
    expect(img.at(64, 64), 'centre, outside the mask').toSatisfy(redish);
    expect(img.at(120, 120), 'far corner, outside the mask').toSatisfy(bluish);
    // outside the mask the pixels are the original's (within encoding noise)
    for (const [x, y] of [[100, 100], [64, 110], [110, 30]]) {
      const [a, b] = [img.at(x, y), original.at(x, y)];
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]))), `(${x}, ${y})`).toBeLessThan(24);
    }
  });

  it('inpaint without a mask repaints the transparent pixels; an image with neither is a 400', async () => {
    const withHole = await sharp(redCircle).ensureAlpha().composite([{ input: Buffer.alloc(32 * 32 * 4, 0), raw: { width: 32, height: 32, channels: 4 }, left: 0, top: 0, blend: 'dest-in' }]).png().toBuffer();
    const res = await post('/v2beta/stable-image/edit/inpaint', { image: { data: withHole, type: 'image/png' }, prompt: 'a blue background' });
    expect(res.status, await res.clone().text()).toBe(200);
    const none = await post('/v2beta/stable-image/edit/inpaint', { image: { data: redCircle, type: 'image/png' }, prompt: 'x' });
    expect(none.status).toBe(400);
    expect(((await none.json()) as { name: string }).name).toBe('invalid_mask_image');
  });

  it('outpaint extends the canvas, keeps the original pixels and paints the new area to match', async () => {
    const before = await balance();
    const res = await post('/v2beta/stable-image/edit/outpaint', { image: { data: redCircle, type: 'image/png' }, left: '64', prompt: 'a red circle on a blue background', creativity: '0.5', seed: '9' });
    expect(res.status, await res.clone().text()).toBe(200);
    const img = await rgbOf(Buffer.from(await res.arrayBuffer()));
    expect([img.width, img.height]).toEqual([192, 128]);
    const original = await rgbOf(redCircle);
    for (const [x, y] of [[64, 64], [10, 10], [100, 120], [127, 5]]) {
      const [a, b] = [img.at(x + 64, y), original.at(x, y)];
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]))), `original (${x}, ${y})`).toBeLessThan(24);
    }
    expect(img.at(8, 64), 'the new area, grown from the blue edge').toSatisfy(bluish);
    expect(before - (await balance())).toBeCloseTo(4, 6);
    const none = await post('/v2beta/stable-image/edit/outpaint', { image: { data: redCircle, type: 'image/png' } });
    expect(none.status).toBe(400);
    expect(((await none.json()) as { errors: string[] }).errors[0]).toContain('left, right, up, down');
  });

  it('erase fills the masked area from its surroundings (no prompt) and is priced as erase', async () => {
    const mask = await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000000' } })
      .composite([{ input: await sharp({ create: { width: 24, height: 24, channels: 3, background: '#ffffff' } }).png().toBuffer(), left: 100, top: 100 }])
      .png()
      .toBuffer();
    const before = await balance();
    const res = await post('/v2beta/stable-image/edit/erase', { image: { data: redCircle, type: 'image/png' }, mask: { data: mask, type: 'image/png' } }, { accept: 'application/json' });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { image: string; finish_reason: string };
    const img = await rgbOf(Buffer.from(body.image, 'base64'));
    expect(img.at(64, 64), 'centre, outside the mask').toSatisfy(redish);
    expect(before - (await balance())).toBeCloseTo(3, 6);
  });
});

describe('results and what sdq does not serve', () => {
  it('a generation not finished within the wait is 202 {id, status: in-progress}; GET /v2beta/results/{id} gives it, only to its account', async () => {
    const res = await post('/v2beta/stable-image/generate/core', { prompt: 'a red circle on a blue background', seed: '5' }, { prefer: 'respond-async' });
    expect(res.status, await res.clone().text()).toBe(202);
    const { id, status } = (await res.json()) as { id: string; status: string };
    expect(status).toBe('in-progress');
    let got: Response | undefined;
    for (let i = 0; i < 200; i++) {
      got = await fetch(`${service.url}/v2beta/results/${id}`, { headers: authed(key, { accept: 'image/*' }) });
      if (got.status !== 202) break;
      expect(await got.json()).toEqual({ id, status: 'in-progress' });
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(got!.status).toBe(200);
    expect(got!.headers.get('seed')).toBe('5');
    const other = await accountWith(service, 'other', 10);
    const theirs = await fetch(`${service.url}/v2beta/results/${id}`, { headers: authed(other) });
    expect(theirs.status).toBe(404);
    expect(((await theirs.json()) as { name: string; errors: string[] }).name).toBe('not_found');
  });

  it('endpoints that need models sdq lacks answer 501 in Stability\'s error shape', async () => {
    for (const path of ['/v2beta/stable-image/edit/remove-background', '/v2beta/stable-image/control/sketch', '/v2beta/image-to-video', '/v2beta/3d/stable-fast-3d']) {
      const res = await post(path, { prompt: 'x' });
      expect(res.status, path).toBe(501);
      const body = (await res.json()) as { id: string; name: string; errors: string[] };
      expect(body).toMatchObject({ name: 'not_implemented' });
      expect(body.errors[0]).toContain(path);
    }
  });
});
