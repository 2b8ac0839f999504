import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { Validator } from '@seriousme/openapi-schema-validator';
import { ERROR_CATALOGUE, ERROR_NAMES, type JobObject } from '@sdq/contracts';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { ADMIN_TOKEN, startTestApi, type TestApi } from '../../../test/support/api';
import { startStubWorker } from './support/stub-worker';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };
let alice: { id: string; api_key: string; key_id: string };
let bob: { id: string; api_key: string; key_id: string };

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
  alice = await api.account('alice');
  bob = await api.account('bob');
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

const call = (path: string, init: RequestInit & { key?: string } = {}) => {
  const { key = alice.api_key, headers, ...rest } = init;
  return fetch(api.url + path, { ...rest, headers: { authorization: `Bearer ${key}`, ...(headers as Record<string, string>) } });
};
const postJson = (path: string, body: unknown, headers: Record<string, string> = {}, key?: string) =>
  call(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers }, key });
const t2i = (engine = 'gen-a') => `/v1/generation/${engine}/text-to-image`;
const prompt = (text = 'a red circle') => ({ text_prompts: [{ text }], steps: 10 });

async function png(width: number, height: number, alpha = false): Promise<Buffer> {
  return sharp({ create: { width, height, channels: alpha ? 4 : 3, background: { r: 0, g: 0, b: 255, alpha: 1 } } }).png().toBuffer();
}
function form(fields: Record<string, string>, files: Record<string, Buffer | [Buffer, string]> = {}): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  for (const [k, v] of Object.entries(files)) {
    const [data, type] = Array.isArray(v) ? v : [v, 'image/png'];
    fd.append(k, new Blob([new Uint8Array(data)], { type }), `${k}.png`);
  }
  return fd;
}
async function expectError(res: Response, status: number, name: string) {
  const body = await res.json();
  expect({ status: res.status, name: body.name }, JSON.stringify(body)).toEqual({ status, name });
  expect(body.id).toEqual(expect.any(String));
  expect(body.message).toEqual(expect.any(String));
  return body;
}

describe('auth', () => {
  it('answers 401 with WWW-Authenticate without a key, with an unknown key, and after revocation', async () => {
    for (const headers of [{}, { authorization: 'Bearer sk-nope' }, { authorization: 'Basic abc' }] as Record<string, string>[]) {
      const res = await fetch(api.url + '/v1/engines/list', { headers });
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      await expectError(res, 401, 'unauthorized');
    }
    const carol = await api.account('carol');
    expect((await call('/v1/engines/list', { key: carol.api_key })).status).toBe(200);
    const revoked = await api.admin(`/v1/admin/keys/${carol.key_id}`, { method: 'DELETE' });
    expect((await revoked.json()).revoked_at).toEqual(expect.any(String));
    await expectError(await call('/v1/engines/list', { key: carol.api_key }), 401, 'unauthorized');
  });

  it('guards the admin API with ADMIN_TOKEN and shows a key once', async () => {
    await expectError(await fetch(api.url + '/v1/admin/accounts'), 401, 'unauthorized');
    // A valid key without the admin scope is forbidden, not unknown.
    await expectError(await fetch(api.url + '/v1/admin/accounts', { headers: { authorization: `Bearer ${alice.api_key}` } }), 403, 'permission_denied');
    await expectError(await fetch(api.url + '/v1/admin/accounts', { headers: { authorization: 'Bearer sk-nope' } }), 401, 'unauthorized');
    const res = await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'dave', credits: 10 }) });
    expect(res.status).toBe(201);
    const dave = await res.json();
    expect(dave).toMatchObject({ name: 'dave', credits: 10, api_key: expect.stringMatching(/^sk-/), id: expect.any(String) });
    const list = await (await api.admin('/v1/admin/accounts')).json();
    expect(JSON.stringify(list)).not.toContain(dave.api_key);
    expect(list.data.map((a: { name: string }) => a.name)).toContain('dave');
    const second = await (await api.admin(`/v1/admin/accounts/${dave.id}/keys`, { method: 'POST' })).json();
    expect((await call('/v1/engines/list', { key: second.api_key })).status).toBe(200);
    await expectError(await api.admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: '' }) }), 400, 'bad_request');
    await expectError(await api.admin('/v1/admin/accounts/acct_nope/keys', { method: 'POST' }), 404, 'not_found');
    expect(ADMIN_TOKEN).toBeTruthy();
  });
});

describe('engines, health, openapi', () => {
  it('lists engines as Stability does', async () => {
    const engines = await (await call('/v1/engines/list')).json();
    expect(engines.map((e: { id: string }) => e.id)).toEqual(['gen-a', 'gen-idle', 'up-x2']);
    // Stability's four fields, and the prices and capabilities beside them.
    for (const e of engines) {
      expect(e).toEqual({ id: e.id, name: expect.any(String), description: expect.any(String), type: 'PICTURE', pricing: expect.any(Object), capabilities: expect.any(Object), alias_of: null });
    }
    // gen-a: native 128x128, so the default sizes are multiples of 64 from 64 up to 16 x its area (512x512).
    expect(engines[0].capabilities).toEqual({
      family: 'stable-diffusion',
      modes: ['text-to-image', 'image-to-image', 'masking'],
      native_width: 128,
      native_height: 128,
      sizes: { step: 64, min_side: 64, max_pixels: 262144, allowed: null },
      samplers: expect.arrayContaining(['K_EULER', 'DDIM']),
      // what a request that names none gets: no manifest or family says, so sdq's own 30 steps and guidance 7
      defaults: { steps: 30, cfg_scale: 7, sampler: null },
      // The stub worker claims no presence; with REQUIRE_WORKER=false (these tests) jobs queue anyway.
      workers: 0,
      loaded_workers: 0,
      // no live worker may serve it (the stub workers here claim no presence)
      state: 'unserved',
    });
    expect(engines[2].capabilities).toMatchObject({ family: null, modes: ['upscale'], sizes: null, defaults: { steps: null, cfg_scale: null, sampler: null } });
  });

  it('answers health checks without a key', async () => {
    expect(await (await fetch(api.url + '/healthz')).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(api.url + '/readyz')).json()).toEqual({ status: 'ready' });
  });

  it('serves a valid OpenAPI 3.1 document built from the request schemas', async () => {
    const doc = await (await fetch(api.url + '/openapi.json')).json();
    const result = await new Validator().validate(doc);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    const t2iSchema = doc.paths['/v1/generation/{engine_id}/text-to-image'].post.requestBody.content['application/json'].schema;
    const resolved = t2iSchema.$ref ? doc.components.schemas[t2iSchema.$ref.split('/').pop()] : t2iSchema;
    expect(resolved.properties.cfg_scale).toMatchObject({ minimum: 0, maximum: 35, default: 7 });
    expect(resolved.required).toEqual(['text_prompts']);
  });

  it('answers unknown routes with not_found', async () => {
    await expectError(await call('/v1/nope'), 404, 'not_found');
  });
});

describe('validation', () => {
  const cases: [string, unknown, number, string][] = [
    ['no prompts', { steps: 10 }, 400, 'invalid_prompts'],
    ['empty prompt list', { text_prompts: [] }, 400, 'invalid_prompts'],
    ['empty prompt', { text_prompts: [{ text: '' }] }, 400, 'invalid_prompts'],
    ['prompt over 2000 chars', { text_prompts: [{ text: 'x'.repeat(2001) }] }, 400, 'invalid_prompts'],
    ['weight not a number', { text_prompts: [{ text: 'a', weight: 'x' }] }, 400, 'invalid_prompts'],
    ['height not multiple of 64', { ...prompt(), height: 100 }, 400, 'invalid_height_or_width'],
    ['width under 128', { ...prompt(), width: 64 }, 400, 'invalid_height_or_width'],
    ['too many pixels', { ...prompt(), width: 2048, height: 1024 }, 400, 'invalid_pixel_count'],
    ['cfg_scale over 35', { ...prompt(), cfg_scale: 36 }, 400, 'bad_request'],
    ['cfg_scale negative', { ...prompt(), cfg_scale: -1 }, 400, 'bad_request'],
    ['samples 0', { ...prompt(), samples: 0 }, 400, 'invalid_samples'],
    ['samples 11', { ...prompt(), samples: 11 }, 400, 'invalid_samples'],
    ['seed negative', { ...prompt(), seed: -1 }, 400, 'bad_request'],
    ['seed too large', { ...prompt(), seed: 4294967296 }, 400, 'bad_request'],
    ['steps under 10', { ...prompt(), steps: 9 }, 400, 'bad_request'],
    ['steps over 150', { ...prompt(), steps: 151 }, 400, 'bad_request'],
    ['unknown sampler', { ...prompt(), sampler: 'K_NOPE' }, 400, 'invalid_sampler'],
    // a name in the wrong case is not Stability's and is refused before anything is queued
    ['sampler in lower case', { ...prompt(), sampler: 'k_lms' }, 400, 'invalid_sampler'],
    ['unknown style preset', { ...prompt(), style_preset: 'vaporwave' }, 400, 'bad_request'],
    ['unknown clip guidance preset', { ...prompt(), clip_guidance_preset: 'FAST_RED' }, 400, 'bad_request'],
    ['extras not an object', { ...prompt(), extras: 3 }, 400, 'bad_request'],
  ];
  it.each(cases)('%s -> %i %s', async (_name, body, status, name) => {
    await expectError(await postJson(t2i(), body, { prefer: 'respond-async' }), status, name);
  });

  it('an unknown sampler names the valid ones', async () => {
    const body = await expectError(await postJson(t2i(), { ...prompt(), sampler: 'K_NOPE' }, { prefer: 'respond-async' }), 400, 'invalid_sampler');
    expect(body.message).toContain('DDIM, K_EULER, K_EULER_ANCESTRAL, K_DPMPP_2M, K_DPMPP_2M_KARRAS, PNDM, LCM');
    expect(body.message).toContain('K_DPM_2_ANCESTRAL, K_LMS, K_DPMPP_2S_ANCESTRAL, K_DPMPP_SDE');
  });

  it('refuses bad JSON, a non-JSON body, an unknown engine and a wrong kind of engine', async () => {
    await expectError(await call(t2i(), { method: 'POST', body: '{', headers: { 'content-type': 'application/json' } }), 400, 'bad_request');
    await expectError(await call(t2i(), { method: 'POST', body: 'text_prompts=a', headers: { 'content-type': 'text/plain' } }), 400, 'invalid_mime_type');
    await expectError(await postJson(t2i('nope'), prompt()), 404, 'not_found');
    await expectError(await postJson(t2i('up-x2'), prompt()), 400, 'bad_request');
  });

  it('accepts every documented Stability field', async () => {
    const res = await postJson(
      t2i(),
      {
        text_prompts: [{ text: 'a cat', weight: 1 }, { text: 'blurry', weight: -1 }],
        height: 128,
        width: 128,
        cfg_scale: 7,
        clip_guidance_preset: 'FAST_BLUE',
        sampler: 'K_EULER',
        samples: 1,
        seed: 42,
        steps: 10,
        style_preset: 'anime',
        extras: { anything: true },
      },
      { prefer: 'respond-async', organization: 'org-1', 'stability-client-id': 'x', 'stability-client-version': '1' },
    );
    expect(res.status).toBe(202);
  });

  it('refuses samples > 1 with an image Accept, and an Accept it cannot serve', async () => {
    await expectError(await postJson(t2i(), { ...prompt(), samples: 2 }, { accept: 'image/png' }), 400, 'invalid_samples');
    await expectError(await postJson(t2i(), prompt(), { accept: 'text/html' }), 406, 'invalid_accept');
  });
});

describe('multipart endpoints', () => {
  const i2i = '/v1/generation/gen-a/image-to-image';
  const masking = '/v1/generation/gen-a/image-to-image/masking';
  const upscale = '/v1/generation/up-x2/image-to-image/upscale';
  const fields = { 'text_prompts[0][text]': 'a boat', 'text_prompts[0][weight]': '1', steps: '10' };
  const post = (path: string, body: FormData) => call(path, { method: 'POST', body, headers: { prefer: 'respond-async' } });

  it('checks files: presence, size, type, dimensions, masks', async () => {
    const img = await png(128, 128);
    await expectError(await post(i2i, form(fields)), 400, 'bad_request');
    await expectError(await post(i2i, form(fields, { init_image: [Buffer.from('not an image'), 'image/png'] })), 400, 'invalid_mime_type');
    await expectError(await post(i2i, form(fields, { init_image: [Buffer.from('%PDF-1.4'), 'application/pdf'] })), 400, 'invalid_mime_type');
    await expectError(await post(i2i, form(fields, { init_image: await png(100, 128) })), 400, 'invalid_image_dimensions');
    await expectError(await post(i2i, form(fields, { init_image: Buffer.alloc(api.config.maxUploadBytes + 1) })), 400, 'invalid_file_size');
    await expectError(await post(i2i, form({ ...fields, 'text_prompts[0][text]': '' }, { init_image: img })), 400, 'invalid_prompts');
    await expectError(await post(i2i, form({ ...fields, image_strength: '2' }, { init_image: img })), 400, 'bad_request');
    await expectError(await post(i2i, form({ ...fields, init_image_mode: 'NOPE' }, { init_image: img })), 400, 'bad_request');
    await expectError(await post(i2i, form({ ...fields, width: '128' }, { init_image: img })), 400, 'invalid_height_or_width');
    await expectError(await call(i2i, { method: 'POST', body: JSON.stringify(prompt()), headers: { 'content-type': 'application/json' } }), 400, 'invalid_mime_type');
    await expectError(await post(masking, form({ ...fields, mask_source: 'MASK_IMAGE_WHITE' }, { init_image: img })), 400, 'invalid_mask_image');
    await expectError(await post(masking, form({ ...fields, mask_source: 'MASK_IMAGE_WHITE' }, { init_image: img, mask_image: await png(256, 256) })), 400, 'invalid_mask_image');
    await expectError(await post(masking, form({ ...fields, mask_source: 'INIT_IMAGE_ALPHA' }, { init_image: img })), 400, 'invalid_mask_image');
    await expectError(await post(masking, form({ ...fields, mask_source: 'NOPE' }, { init_image: img })), 400, 'bad_request');
    await expectError(await post(upscale, form({ width: '256', height: '256' }, { image: img })), 400, 'invalid_height_or_width');
    await expectError(await post(upscale, form({}, {})), 400, 'bad_request');
  });

  it('queues image-to-image, masking and upscale jobs with their inputs stored', async () => {
    const img = await png(128, 128);
    for (const [path, body, kind] of [
      [i2i, form({ ...fields, init_image_mode: 'STEP_SCHEDULE', step_schedule_start: '0.4' }, { init_image: img }), 'image-to-image'],
      [masking, form({ ...fields, mask_source: 'MASK_IMAGE_BLACK' }, { init_image: img, mask_image: img }), 'masking'],
      [masking, form({ ...fields, mask_source: 'INIT_IMAGE_ALPHA' }, { init_image: await png(128, 128, true) }), 'masking'],
      [upscale, form({ width: '256' }, { image: img }), 'upscale'],
    ] as const) {
      const res = await post(path, body);
      const job = await res.json();
      expect(res.status, JSON.stringify(job)).toBeLessThan(300);
      expect(job.kind).toBe(kind);
      const field = kind === 'upscale' ? 'image' : 'init_image';
      expect((await api.server.deps.storage.get(`inputs/${job.id}/${field}`)).length).toBeGreaterThan(0);
    }
  });
});

describe('jobs', () => {
  it('answers a sync request as Stability: JSON artifacts, then image bytes with Seed and Finish-Reason', async () => {
    const res = await postJson(t2i(), { ...prompt(), samples: 2, seed: 7 });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.artifacts).toHaveLength(2);
    expect(body.artifacts[0]).toEqual({ base64: expect.any(String), seed: 7, finishReason: 'SUCCESS' });
    expect((await sharp(Buffer.from(body.artifacts[1].base64, 'base64')).metadata()).width).toBe(128);

    for (const type of ['image/png', 'image/jpeg', 'image/webp']) {
      const img = await postJson(t2i(), { ...prompt(), seed: 9 }, { accept: type });
      expect(img.status).toBe(200);
      expect(img.headers.get('content-type')).toBe(type);
      expect(img.headers.get('seed')).toBe('9');
      expect(img.headers.get('finish-reason')).toBe('SUCCESS');
      expect((await sharp(Buffer.from(await img.arrayBuffer())).metadata()).format).toBe(type === 'image/jpeg' ? 'jpeg' : type.slice(6));
    }
  });

  it('answers a failed sync job with its catalogue error', async () => {
    await expectError(await postJson(t2i(), prompt('fail:invalid_sampler')), 400, 'invalid_sampler');
  });

  it('answers 202 with the job object for Prefer: respond-async, then the job runs to success', async () => {
    // gen-idle has no worker, so the job is certainly still queued.
    const res = await postJson(t2i('gen-idle'), prompt(), { prefer: 'respond-async' });
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    const job: JobObject = await res.json();
    expect(job).toMatchObject({ status: 'queued', engine: 'gen-idle', kind: 'text-to-image', artifacts: [], error: null });
    expect(job.urls).toEqual({ self: `${api.url}/v1/jobs/${job.id}`, cancel: `${api.url}/v1/jobs/${job.id}/cancel`, events: `${api.url}/v1/jobs/${job.id}/events` });
    expect(res.headers.get('location')).toBe(job.urls.self);

    const waited = await (await postJson(t2i(), prompt(), { prefer: 'wait=10' })).json();
    expect(waited.status).toBe('succeeded');
    expect(waited.progress).toEqual({ step: 10, steps: 10 });
    expect(waited.started_at).toEqual(expect.any(String));
    expect(waited.finished_at).toEqual(expect.any(String));
    const art = waited.artifacts[0];
    expect(art).toMatchObject({ content_type: 'image/png', width: 128, height: 128, finish_reason: 'SUCCESS' });

    // The local artifact URL is signed and expires.
    const ok = await fetch(art.url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('image/png');
    const tampered = new URL(art.url);
    tampered.searchParams.set('signature', '0'.repeat(64));
    await expectError(await fetch(tampered), 403, 'permission_denied');
    const expired = new URL(art.url);
    expired.searchParams.set('expires', String(Math.floor(Date.now() / 1000) - 10));
    await expectError(await fetch(expired), 403, 'permission_denied');
    await expectError(await fetch(art.url.split('?')[0]), 403, 'permission_denied');
  });

  it('streams SSE: queued or started, progress for every step, completed with urls', async () => {
    const job = await (await postJson(t2i(), prompt('slow'), { prefer: 'respond-async' })).json();
    const res = await call(`/v1/jobs/${job.id}/events`);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    const events = text
      .split('\n\n')
      .filter((b) => b.startsWith('event:'))
      .map((b) => ({ event: /^event: (.*)$/m.exec(b)![1], data: JSON.parse(/^data: (.*)$/m.exec(b)![1]) }));
    const names = events.map((e) => e.event);
    expect(['queued', 'started']).toContain(names[0]);
    expect(names.at(-1)).toBe('completed');
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step);
    expect(steps.at(-1)).toBe(10);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    const done = events.at(-1)!.data;
    expect(done).toMatchObject({ id: job.id, status: 'succeeded', urls: job.urls });
    expect(done.artifacts).toHaveLength(1);
  });

  it("lists the caller's own jobs newest first, with cursor pagination", async () => {
    const eve = await api.account('eve');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await (await postJson(t2i('gen-idle'), prompt(), { prefer: 'respond-async' }, eve.api_key)).json()).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: JobObject[]; next_cursor: string | null } = await (await call(`/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { key: eve.api_key })).json();
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((j) => j.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    await expectError(await call('/v1/jobs?limit=0', { key: eve.api_key }), 400, 'bad_request');
    await expectError(await call('/v1/jobs?cursor=***', { key: eve.api_key }), 400, 'bad_request');
  });

  it("answers 404 for another account's job, everywhere", async () => {
    const job = await (await postJson(t2i('gen-idle'), prompt(), { prefer: 'respond-async' })).json();
    await expectError(await call(`/v1/jobs/${job.id}`, { key: bob.api_key }), 404, 'not_found');
    await expectError(await call(`/v1/jobs/${job.id}/cancel`, { method: 'POST', key: bob.api_key }), 404, 'not_found');
    await expectError(await call(`/v1/jobs/${job.id}/events`, { key: bob.api_key }), 404, 'not_found');
    await expectError(await call('/v1/jobs/nope'), 404, 'not_found');
    const list = await (await call('/v1/jobs', { key: bob.api_key })).json();
    expect(list.data.map((j: JobObject) => j.id)).not.toContain(job.id);
  });

  it('cancels a queued job (removed), and refuses to cancel a finished one', async () => {
    const first = await (await postJson(t2i('gen-idle'), prompt(), { prefer: 'respond-async' })).json();
    const second = await (await postJson(t2i('gen-idle'), prompt(), { prefer: 'respond-async' })).json();
    expect(second.queue_position).toBeGreaterThan(0);
    const res = await call(`/v1/jobs/${first.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(200);
    const canceled = await res.json();
    expect(canceled).toMatchObject({ id: first.id, status: 'canceled', error: { name: 'canceled' }, finished_at: expect.any(String) });
    expect((await (await call(`/v1/jobs/${first.id}`)).json()).status).toBe('canceled');
    await expectError(await call(`/v1/jobs/${first.id}/cancel`, { method: 'POST' }), 409, 'conflict');

    const done = await (await postJson(t2i(), prompt(), { prefer: 'wait=10' })).json();
    expect(done.status).toBe('succeeded');
    await expectError(await call(`/v1/jobs/${done.id}/cancel`, { method: 'POST' }), 409, 'conflict');
  });

  it('cancels a running job through the cancel channel', async () => {
    const job = await (await postJson(t2i(), { ...prompt('slow'), steps: 50 }, { prefer: 'respond-async' })).json();
    for (let i = 0; i < 100 && (await (await call(`/v1/jobs/${job.id}`)).json()).status !== 'running'; i++) await new Promise((r) => setTimeout(r, 50));
    const res = await call(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    const final = await (await call(`/v1/jobs/${job.id}/events`)).text();
    expect(final).toContain('"status":"canceled"');
    expect((await (await call(`/v1/jobs/${job.id}`)).json()).progress.step).toBeLessThan(50);
  });

  it('removes jobs and their stored objects once retention has passed', async () => {
    const job = await (await postJson(t2i(), prompt(), { prefer: 'wait=10' })).json();
    const key = `generations/${job.id}/0.png`;
    expect((await api.server.deps.storage.get(key)).length).toBeGreaterThan(0);
    const removed = await api.server.deps.jobs.sweep(Date.now() + api.config.resultRetention * 1000 + 1);
    expect(removed).toBeGreaterThan(0);
    await expectError(await call(`/v1/jobs/${job.id}`), 404, 'not_found');
    await expect(api.server.deps.storage.get(key)).rejects.toThrow(/no stored object/);
    // Queued jobs are kept past their time until they finish.
    const list = await (await call('/v1/jobs?limit=100')).json();
    expect(list.data.every((j: JobObject) => j.status === 'queued' || j.status === 'running')).toBe(true);
  });
});

describe('documentation', () => {
  it("documents every error in the README's error table: one row per catalogue name, with its status", () => {
    const readme = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    // the API's Errors section: its table of | `name` | status | when |
    const section = readme.slice(readme.indexOf('Every error is `{"id","name","message"}`'));
    const rows = new Map<string, number[]>();
    for (const [, name, status] of section.slice(0, section.indexOf('\n\n', section.indexOf('| name | status |'))).matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)) {
      rows.set(name, [...(rows.get(name) ?? []), Number(status)]);
    }
    expect(rows.size).toBeGreaterThan(20);
    for (const name of ERROR_NAMES) expect(rows.get(name), name).toEqual([ERROR_CATALOGUE[name].status]);
    expect([...rows.keys()].filter((name) => !(ERROR_NAMES as readonly string[]).includes(name))).toEqual([]);
  });
});
