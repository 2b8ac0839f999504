/**
 * AUTOMATIC1111's /sdapi/v1 with the JSON bodies its API models define, defaults omitted as scripts
 * send them: txt2img follows the prompt, with A1111's response shape and infotext; Basic auth with the
 * key as the password; per-key options; a caller's progress and interrupt touch only its own job; errors
 * in A1111's shape, never charged.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountWith, authed, balanceOf, bluish, readEvents, redish, rgbOf, type Service, type Stack, startStack, waitFor } from './support';

let stack: Stack;
let service: Service;
let key: string;

beforeAll(async () => {
  stack = await startStack({ workerEnv: { ENGINES: 'tiny-sd,tiny-upscaler-x2' } });
  service = stack.service;
  key = await accountWith(service, 'a1111', 100);
});
afterAll(() => stack?.close());

const api = (path: string, init: { method?: string; body?: unknown; key?: string; basic?: boolean } = {}) => {
  const k = init.key ?? key;
  const authorization = init.basic ? `Basic ${Buffer.from(`anyone:${k}`).toString('base64')}` : `Bearer ${k}`;
  return fetch(`${service.url}/sdapi/v1/${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { authorization, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
};
const balance = (k = key) => balanceOf(service, k);

describe('AUTOMATIC1111 /sdapi/v1', () => {
  it('txt2img: a script body (defaults omitted) gives A1111s response, following the prompt, with its infotext', async () => {
    const before = await balance();
    const res = await api('txt2img', { body: { prompt: 'a red circle on a blue background', steps: 20, seed: 42, sampler_name: 'Euler a', batch_size: 2 }, basic: true });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { images: string[]; parameters: Record<string, unknown>; info: string };
    expect(body.images).toHaveLength(2);
    expect(body.parameters).toMatchObject({ prompt: 'a red circle on a blue background', steps: 20, seed: 42, batch_size: 2, n_iter: 1, cfg_scale: 7 });
    const info = JSON.parse(body.info) as { seed: number; all_seeds: number[]; sampler_name: string; infotexts: string[]; width: number; height: number };
    expect(info).toMatchObject({ seed: 42, all_seeds: [42, 43], sampler_name: 'Euler a', width: 128, height: 128 });
    // A1111's infotext, with A1111's sampler name, that png-info parses back
    expect(info.infotexts[0]).toMatch(/^a red circle on a blue background\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 128x128, Model: tiny-sd/);
    const read = (await (await api('png-info', { body: { image: body.images[1] } })).json()) as { info: string; parameters: Record<string, string> };
    expect(read.info).toBe(info.infotexts[1]);
    expect(read.parameters).toMatchObject({ Prompt: 'a red circle on a blue background', 'Negative prompt': '', Steps: '20', Sampler: 'Euler a', 'CFG scale': '7', Seed: '43', 'Size-1': '128', 'Size-2': '128', Model: 'tiny-sd' });
    const img = await rgbOf(Buffer.from(body.images[0], 'base64'));
    expect(img.at(64, 64), 'centre').toSatisfy(redish);
    expect(img.at(4, 4), 'corner').toSatisfy(bluish);
    expect(before - (await balance())).toBeGreaterThan(0);
  });

  it('img2img keeps the init image at low denoising; with a mask it repaints inside only (A1111 white = repaint)', async () => {
    const first = (await (await api('txt2img', { body: { prompt: 'a red circle on a blue background', steps: 20, seed: 42 } })).json()) as { images: string[] };
    const init = first.images[0];
    const kept = await api('img2img', { body: { prompt: 'a red circle on a blue background', init_images: [`data:image/png;base64,${init}`], denoising_strength: 0.3, steps: 20, seed: 7 } });
    expect(kept.status, await kept.clone().text()).toBe(200);
    const keptBody = (await kept.json()) as { images: string[]; parameters: { init_images: unknown } };
    expect(keptBody.parameters.init_images).toBeNull();
    const img = await rgbOf(Buffer.from(keptBody.images[0], 'base64'));
    expect(img.at(64, 64), 'centre').toSatisfy(redish);
    expect(img.at(4, 4), 'corner').toSatisfy(bluish);
    // white square in the middle = repaint there; the rest stays the init image, pixel for pixel
    const maskRaw = Buffer.alloc(128 * 128, 0);
    for (let y = 40; y < 88; y++) maskRaw.fill(255, y * 128 + 40, y * 128 + 88);
    const mask = (await sharp(maskRaw, { raw: { width: 128, height: 128, channels: 1 } }).png().toBuffer()).toString('base64');
    const painted = await api('img2img', { body: { prompt: 'a yellow square on a blue background', init_images: [init], mask, mask_blur: 0, denoising_strength: 1, steps: 20, seed: 7 } });
    expect(painted.status, await painted.clone().text()).toBe(200);
    const [out, original] = [await rgbOf(Buffer.from(((await painted.json()) as { images: string[] }).images[0], 'base64')), await rgbOf(Buffer.from(init, 'base64'))];
    for (const [x, y] of [[4, 4], [123, 123], [10, 64], [64, 10]]) expect(out.at(x, y), `outside the mask at ${x},${y}`).toEqual(original.at(x, y));
    const broken = await api('img2img', { body: { prompt: 'x', init_images: ['bm90IGFuIGltYWdl'] } });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error: 'invalid_mime_type', detail: expect.stringMatching(/^init_images\[0\]: is not a PNG/) });
  });

  it('send_images: false answers no images, yet the job ran and its info names the seeds; progress takes skip_current_image', async () => {
    const res = await api('txt2img', { body: { prompt: 'a red circle', steps: 10, seed: 9, send_images: false, save_images: true } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { images: string[]; info: string };
    expect(body.images).toEqual([]);
    // no sampler asked: info names the engine's own, as the infotext does (A1111's "Euler"), never ""
    const info = JSON.parse(body.info) as { sampler_name: string; infotexts: string[] };
    expect(info).toMatchObject({ all_seeds: [9], job_id: res.headers.get('x-job-id'), sampler_name: 'Euler' });
    expect(info.infotexts[0]).toContain('Sampler: Euler,');
    const job = (await (await fetch(`${service.url}/v1/jobs/${res.headers.get('x-job-id')}`, { headers: authed(key) })).json()) as { status: string; artifacts: unknown[] };
    expect(job).toMatchObject({ status: 'succeeded', artifacts: [expect.anything()] });
    const progress = await api('progress?skip_current_image=true');
    expect(progress.status).toBe(200);
    expect(await progress.json()).toMatchObject({ current_image: null, state: { job_count: 0 } });
  });

  it('png-info reads a negative prompt back, and an image without parameters as empty', async () => {
    const out = (await (await api('txt2img', { body: { prompt: 'a red circle', negative_prompt: 'green', steps: 10, seed: 5 } })).json()) as { images: string[] };
    const read = (await (await api('png-info', { body: { image: `data:image/png;base64,${out.images[0]}` } })).json()) as { parameters: Record<string, string> };
    expect(read.parameters).toMatchObject({ Prompt: 'a red circle', 'Negative prompt': 'green', Steps: '10', Seed: '5' });
    const plain = (await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).png().toBuffer()).toString('base64');
    expect(await (await api('png-info', { body: { image: plain } })).json()).toEqual({ info: '', items: {}, parameters: {} });
  });

  it('extra-single-image upscales by the upscaler engine, and refuses a factor beyond it at submission', async () => {
    const src = (await (await api('txt2img', { body: { prompt: 'a red circle on a blue background', steps: 10, seed: 42 } })).json()) as { images: string[] };
    const res = await api('extra-single-image', { body: { image: src.images[0], upscaling_resize: 2, upscaler_1: 'tiny-upscaler-x2' } });
    expect(res.status, await res.clone().text()).toBe(200);
    const out = (await res.json()) as { image: string; html_info: string };
    const img = await rgbOf(Buffer.from(out.image, 'base64'));
    expect([img.width, img.height]).toEqual([256, 256]);
    expect(img.at(128, 128), 'centre').toSatisfy(redish);
    const before = await balance();
    const beyond = await api('extra-single-image', { body: { image: src.images[0], upscaling_resize: 3 } });
    expect(beyond.status).toBe(400);
    expect(await beyond.json()).toMatchObject({ error: 'invalid_height_or_width', detail: expect.stringMatching(/^upscaling_resize: 384x384 is beyond tiny-upscaler-x2's 2x/) });
    expect(await balance()).toBe(before);
  });

  it("one account's balance pays for all three dialects: what it lost is the sum of the jobs' charges", async () => {
    const shared = await accountWith(service, 'three-dialects', 100);
    const before = await balance(shared);
    const stability = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(shared, { 'content-type': 'application/json', accept: 'application/json' }), body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }) });
    const openai = await fetch(`${service.url}/v1/images/generations`, { method: 'POST', headers: authed(shared, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: 'a red circle', quality: 'low' }) });
    const a1111 = await api('txt2img', { body: { prompt: 'a red circle', steps: 12 }, key: shared });
    expect([stability.status, openai.status, a1111.status]).toEqual([200, 200, 200]);
    const jobs = ((await (await fetch(`${service.url}/v1/jobs?limit=10`, { headers: authed(shared) })).json()) as { data: { id: string; credits_charged: number }[] }).data;
    expect(jobs).toHaveLength(3);
    expect(jobs.map((j) => j.id)).toEqual(expect.arrayContaining([openai.headers.get('x-job-id'), a1111.headers.get('x-job-id')]));
    const charged = jobs.reduce((n, j) => n + j.credits_charged, 0);
    expect(charged).toBeGreaterThan(0);
    expect(before - (await balance(shared))).toBeCloseTo(charged, 6);
  });

  it('lists models, samplers (in A1111 names), schedulers, upscalers and the loras of LORA_DIR (models/loras ships green-objects)', async () => {
    const models = (await (await api('sd-models')).json()) as { title: string }[];
    expect(models.map((m) => m.title)).toContain('tiny-sd');
    const samplers = ((await (await api('samplers')).json()) as { name: string }[]).map((s) => s.name);
    expect(samplers).toEqual(expect.arrayContaining(['Euler a', 'Euler', 'DPM++ 2M', 'DDIM', 'LMS', 'PLMS']));
    expect(((await (await api('schedulers')).json()) as { label: string }[]).map((s) => s.label)).toContain('Karras');
    expect(((await (await api('upscalers')).json()) as { name: string }[]).map((u) => u.name)).toContain('tiny-upscaler-x2');
    expect(await (await api('loras')).json()).toEqual([expect.objectContaining({ name: 'green-objects', alias: 'green-objects', path: 'green-objects.safetensors' })]);
  });

  it('options: POST sets the caller key default model, never another caller', async () => {
    const other = await accountWith(service, 'a1111-other', 10);
    expect((await (await api('options')).json()) as object).toMatchObject({ sd_model_checkpoint: 'tiny-sd' });
    expect((await api('options', { body: { sd_model_checkpoint: 'tiny-sdxl' } })).status).toBe(200);
    expect((await (await api('options')).json()) as object).toMatchObject({ sd_model_checkpoint: 'tiny-sdxl' });
    expect((await (await api('options', { key: other })).json()) as object).toMatchObject({ sd_model_checkpoint: 'tiny-sd' });
    const bad = await api('options', { body: { sd_model_checkpoint: 'nope' } });
    expect(bad.status).toBe(404);
    expect(await bad.json()).toMatchObject({ error: 'not_found', detail: expect.stringMatching(/^sd_model_checkpoint: nope/) });
    await api('options', { body: { sd_model_checkpoint: 'tiny-sd' } });
  });

  it("progress and interrupt are the caller's own: another caller's interrupt leaves the job running", async () => {
    const other = await accountWith(service, 'a1111-bystander', 10);
    const running = api('txt2img', { body: { prompt: 'a red circle on a blue background', steps: 150 } });
    await waitFor(async () => (((await (await api('progress')).json()) as { state: { sampling_step: number } }).state.sampling_step ?? 0) > 2, 'the job to run');
    const mine = (await (await api('progress')).json()) as { progress: number; state: { sampling_steps: number; job_count: number } };
    expect(mine.state).toMatchObject({ sampling_steps: 150, job_count: 1 });
    expect(mine.progress).toBeGreaterThan(0);
    const theirs = (await (await api('progress', { key: other })).json()) as { state: { job_count: number } };
    expect(theirs.state.job_count).toBe(0);
    expect((await api('interrupt', { method: 'POST', key: other })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(((await (await api('progress')).json()) as { state: { job_count: number } }).state.job_count).toBe(1);
    expect((await api('interrupt', { method: 'POST' })).status).toBe(200);
    const ended = await running;
    expect(ended.status).toBe(409);
    expect(await ended.json()).toMatchObject({ error: 'canceled' });
  });

  it('names as A1111 resolves them: every scheduler it lists by name (as front ends send it back) or label, a scheduler at the end of the sampler name, aliases, sampler_index', async () => {
    const price = async (body: Record<string, unknown>) => {
      const res = await fetch(`${service.url}/sdapi/v1/txt2img?dry_run=true`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a red circle', steps: 10, ...body }) });
      return [res.status, res.status === 200 ? '' : ((await res.json()) as { error: string }).error];
    };
    const schedulers = (await (await api('schedulers')).json()) as { name: string; label: string }[];
    for (const { name, label } of schedulers) {
      expect([name, await price({ sampler_name: 'Euler a', scheduler: name })]).toEqual([name, [200, '']]);
      expect([label, await price({ sampler_name: 'DPM++ 2M', scheduler: label })]).toEqual([label, [200, '']]);
    }
    for (const body of [{ sampler_name: 'DPM++ 2M Karras' }, { sampler_name: 'DPM++ 2M karras' }, { sampler_name: 'k_euler_a' }, { sampler_name: 'K_DPMPP_2M' }, { sampler_index: 'Euler' }, { sampler_name: '', sampler_index: 'DDIM' }, { scheduler: '' }, { scheduler: 'no such schedule' }]) {
      expect([body, await price(body)]).toEqual([body, [200, '']]);
    }
    expect(await price({ sampler_name: 'k_no_such_sampler' })).toEqual([400, 'invalid_sampler']);
    // what ran is in the info: a schedule sdq cannot run falls back to Automatic, and says so
    const res = await api('txt2img', { body: { prompt: 'a red circle on a blue background', steps: 10, seed: 4, sampler_name: 'DPM++ 2M', scheduler: 'polyexponential' } });
    expect(res.status, await res.clone().text()).toBe(200);
    const info = JSON.parse(((await res.json()) as { info: string }).info) as { sampler_name: string; scheduler: string; extra_generation_params: Record<string, string> };
    expect(info).toMatchObject({ sampler_name: 'DPM++ 2M', scheduler: 'Automatic', extra_generation_params: { 'Schedule type': 'Automatic', 'sdq note': expect.stringContaining('Polyexponential') } });
    const karras = JSON.parse(((await (await api('txt2img', { body: { prompt: 'a red circle', steps: 10, seed: 4, sampler_name: 'dpm++ 2m', scheduler: 'karras' } })).json()) as { info: string }).info) as { sampler_name: string; scheduler: string };
    expect(karras).toMatchObject({ scheduler: 'Karras' });
  });

  it('every list a front end reads at connect time answers with what sdq has; operator actions are 403, interrogate 501, unknown routes 404, all in A1111 shape', async () => {
    for (const name of ['sd-vae', 'hypernetworks', 'face-restorers', 'prompt-styles', 'sd-modules', 'script-info', 'extensions']) {
      const res = await api(name);
      expect([name, res.status, await res.json()]).toEqual([name, 200, []]);
    }
    expect(await (await api('realesrgan-models')).json()).toEqual([{ name: 'tiny-upscaler-x2', path: null, scale: 2 }]);
    expect(await (await api('scripts')).json()).toEqual({ txt2img: [], img2img: [] });
    const flags = (await (await api('cmd-flags')).json()) as Record<string, unknown>;
    expect(flags).toMatchObject({ api: true });
    // nothing of the server's own: no paths
    expect(JSON.stringify(flags)).not.toMatch(/\//);
    expect(await (await api('memory')).json()).toMatchObject({ ram: { total: expect.any(Number) }, cuda: { error: expect.any(String) } });
    for (const action of ['refresh-checkpoints', 'refresh-vae']) expect(await (await api(action, { method: 'POST' })).json()).toBeNull();
    for (const action of ['unload-checkpoint', 'reload-checkpoint']) {
      const res = await api(action, { method: 'POST' });
      expect([action, res.status, ((await res.json()) as { error: string }).error]).toEqual([action, 403, 'permission_denied']);
    }
    const interrogate = await api('interrogate', { body: { image: 'x', model: 'clip' } });
    expect(interrogate.status).toBe(501);
    expect(await interrogate.json()).toMatchObject({ error: 'not_implemented', detail: expect.stringContaining('interrogate') });
    const missing = await api('no-such-list');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not_found', detail: expect.any(String), body: '', errors: expect.any(String) });
    // A1111's ping needs no key
    const ping = await fetch(`${service.url}/internal/ping`);
    expect([ping.status, await ping.json()]).toEqual([200, {}]);
  });

  it('hires fix: 128 -> 256 by Latent and by the upscaler engine, the colours kept, both passes priced and charged once, the Hires lines in the infotext', async () => {
    const body = { prompt: 'a large red circle in the center on a blue background', steps: 10, seed: 5, enable_hr: true, hr_scale: 2, hr_second_pass_steps: 10, denoising_strength: 0.6 };
    const priced = async (extra: Record<string, unknown>) => ((await (await fetch(`${service.url}/sdapi/v1/txt2img?dry_run=true`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, ...extra }) })).json()) as { credits: number }).credits;
    const still = await priced({ enable_hr: false });
    const at256 = ((await (await fetch(`${service.url}/sdapi/v1/txt2img?dry_run=true`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, enable_hr: false, width: 256, height: 256 }) })).json()) as { credits: number }).credits;
    expect(await priced({})).toBeCloseTo(still + at256, 6);
    for (const upscaler of ['Latent', 'tiny-upscaler-x2']) {
      const before = await balance();
      const res = await api('txt2img', { body: { ...body, hr_upscaler: upscaler } });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as { images: string[]; info: string };
      const png = Buffer.from(answer.images[0], 'base64');
      const rgb = await rgbOf(png);
      expect([rgb.width, rgb.height]).toEqual([256, 256]);
      expect(redish(rgb.at(128, 128))).toBe(true);
      expect(bluish(rgb.at(8, 8))).toBe(true);
      const infotext = (JSON.parse(answer.info) as { infotexts: string[] }).infotexts[0];
      expect(infotext).toMatch(new RegExp(`Denoising strength: 0\\.6, Hires upscale: 2, Hires steps: 10, Hires upscaler: ${upscaler}`));
      expect(before - (await balance())).toBeCloseTo(still + at256, 6);
    }
    expect(((await (await api('latent-upscale-modes')).json()) as { name: string }[]).map((m) => m.name)).toContain('Latent (nearest-exact)');
    // a target the engine cannot draw, or an upscaler that is not here: 400 before any charge
    const before = await balance();
    const odd = await api('txt2img', { body: { ...body, hr_scale: 1.3 } });
    expect([odd.status, ((await odd.json()) as { error: string }).error]).toEqual([400, 'invalid_height_or_width']);
    const unknown = await api('txt2img', { body: { ...body, hr_upscaler: 'R-ESRGAN 4x+' } });
    expect([unknown.status, ((await unknown.json()) as { error: string }).error]).toEqual([400, 'bad_request']);
    expect(await balance()).toBe(before);
  });

  it('hires fix: one progress 0 -> 1 across both passes; a cancel during the second pass refunds as a cancel does', async () => {
    const before = await balance();
    const start = (extra: Record<string, unknown>) => fetch(`${service.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' }, body: JSON.stringify({ prompt: 'a red circle', steps: 10, seed: 6, enable_hr: true, hr_second_pass_steps: 30, denoising_strength: 0.7, ...extra }) });
    const job = (await (await start({})).json()) as { id: string; urls: { events: string } };
    const events = await readEvents(job.urls.events, key, (e) => e.event === 'completed' || e.event === 'failed');
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data as { step: number; steps: number });
    expect(new Set(progress.map((p) => p.steps))).toEqual(new Set([40]));
    for (let i = 1; i < progress.length; i++) expect(progress[i].step).toBeGreaterThanOrEqual(progress[i - 1].step);
    expect(progress.at(-1)!.step).toBe(40);
    const charged = before - (await balance());
    expect(charged).toBeGreaterThan(0);

    const second = (await (await start({ hr_second_pass_steps: 150 })).json()) as { id: string; urls: { events: string } };
    await readEvents(second.urls.events, key, (e) => e.event === 'progress' && (e.data as { step: number }).step > 12);
    expect((await fetch(`${service.url}/v1/jobs/${second.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })).status).toBeLessThan(300);
    await waitFor(async () => ((await (await fetch(`${service.url}/v1/jobs/${second.id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { status: string }).status === 'canceled', 'the hires job to be canceled');
    expect(before - (await balance())).toBeCloseTo(charged, 6);
  });

  it('refuses in A1111 shape naming the field, and charges nothing', async () => {
    const before = await balance();
    const sampler = await api('txt2img', { body: { prompt: 'x', sampler_name: 'Restart' } });
    expect(sampler.status).toBe(400);
    expect(await sampler.json()).toMatchObject({ error: 'invalid_sampler', detail: expect.stringMatching(/^sampler_name: "Restart" is not a sampler of tiny-sd/) });
    const steps = await api('txt2img', { body: { prompt: 'x', steps: 'many' } });
    expect(steps.status).toBe(400);
    expect(((await steps.json()) as { detail: string }).detail).toMatch(/^steps/);
    expect((await api('txt2img', { body: { prompt: 'x' }, key: 'sk-not-a-key', basic: true })).status).toBe(401);
    expect(await balance()).toBe(before);
  });
});
