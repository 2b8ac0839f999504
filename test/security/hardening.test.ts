/**
 * Hardening II, one test per defect the probe found: dry runs on every dialect charge nothing and make no
 * job; concurrent cancels of queued jobs all read canceled; A1111's progress and interrupt are the calling
 * key's; png-info and override_settings parse client text in linear time; event streams and base64 image
 * bodies are capped per key and in all; decoded images obey MAX_UPLOAD_BYTES; account names refuse
 * control characters; A1111's lists show no server paths.
 */
import { request } from 'node:http';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, accountWith, authed, balanceOf, type Service, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';
import { startTestRedis, type TestRedis } from '../support/redis';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService(redis, {
    env: {
      MAX_EVENT_STREAMS_PER_KEY: '3',
      MAX_EVENT_STREAMS_PER_ACCOUNT: '4',
      MAX_UPLOAD_BYTES: '262144',
      MAX_UPLOADS_PER_KEY: '2',
      MAX_JSON_IMAGE_BYTES_IN_FLIGHT: '1048576',
      // jobs of tiny-sdxl wait in the queue: no worker serves it
      REQUIRE_WORKER: 'false',
      MAX_ACTIVE_JOBS: '100',
      RATE_LIMIT: '1000',
    },
  });
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
});
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

const post = (path: string, key: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${service.url}${path}`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', ...headers }), body: JSON.stringify(body) });
const jobsOf = async (key: string) => ((await (await fetch(`${service.url}/v1/jobs?limit=100`, { headers: authed(key) })).json()) as { data: { id: string; status: string }[] }).data;

/** Another key of the account `key` belongs to (made by the admin API). */
async function secondKey(key: string): Promise<string> {
  const account = ((await (await fetch(`${service.url}/v1/user/account`, { headers: authed(key) })).json()) as { id: string }).id;
  const created = await fetch(`${service.url}/v1/admin/accounts/${account}/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ scope: 'generate' }) });
  return ((await created.json()) as { api_key: string }).api_key;
}

/** A PNG whose `parameters` text chunk is `text` (as A1111 writes its infotext). */
async function pngWithParameters(text: string): Promise<Buffer> {
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } }).png().toBuffer();
  const data = Buffer.concat([Buffer.from('parameters\0', 'latin1'), Buffer.from(text, 'latin1')]);
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write('tEXt', 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(Buffer.concat([Buffer.from('tEXt', 'latin1'), data])), 8 + data.length);
  // after IHDR (8-byte signature + 25-byte IHDR chunk)
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}
function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('dry runs charge nothing on every dialect', () => {
  it('A1111 txt2img and img2img, OpenAI generations, edits and variations: a price, no job, no hold', async () => {
    const key = await accountWith(service, 'dry', 50);
    const before = await balanceOf(service, key);
    const red = (await sharp({ create: { width: 128, height: 128, channels: 3, background: '#ff0000' } }).png().toBuffer()).toString('base64');
    const a1111 = [
      await post('/sdapi/v1/txt2img?dry_run=true', key, { prompt: 'a red circle', steps: 20, batch_size: 2 }),
      await post('/sdapi/v1/img2img?dry_run=true', key, { prompt: 'a red circle', steps: 20, init_images: [red] }),
      await post('/v1/images/generations?dry_run=true', key, { prompt: 'a red circle', size: '256x256', n: 3 }),
    ];
    // edits repaint the transparent pixels: a red square with a clear centre
    const pixels = Buffer.alloc(128 * 128 * 4);
    for (let i = 0; i < 128 * 128; i++) {
      const x = i % 128;
      const y = Math.floor(i / 128);
      pixels.set([255, 0, 0, x > 32 && x < 96 && y > 32 && y < 96 ? 0 : 255], i * 4);
    }
    const clear = await sharp(pixels, { raw: { width: 128, height: 128, channels: 4 } }).png().toBuffer();
    const form = new FormData();
    form.set('image', new Blob([clear], { type: 'image/png' }), 'red.png');
    form.set('prompt', 'a red circle');
    const edits = await fetch(`${service.url}/v1/images/edits?dry_run=true`, { method: 'POST', headers: authed(key), body: form });
    const variationForm = new FormData();
    variationForm.set('image', new Blob([Buffer.from(red, 'base64')], { type: 'image/png' }), 'red.png');
    const variations = await fetch(`${service.url}/v1/images/variations?dry_run=true`, { method: 'POST', headers: authed(key), body: variationForm });
    const bodies: { dry_run: boolean; credits: number; samples: number }[] = [];
    for (const res of [...a1111, edits, variations]) {
      expect(res.status, await res.clone().text()).toBe(200);
      const body = (await res.json()) as { dry_run: boolean; credits: number; samples: number };
      expect(body.dry_run).toBe(true);
      expect(body.credits).toBeGreaterThan(0);
      bodies.push(body);
    }
    expect(bodies.map((b) => b.samples)).toEqual([2, 1, 3, 1, 1]);
    expect(await jobsOf(key)).toEqual([]);
    expect(await balanceOf(service, key)).toBe(before);
  });
});

describe('cancels', () => {
  it('two concurrent cancels of each of 24 queued jobs: every job reads canceled, none failed, nothing charged', async () => {
    const key = await accountWith(service, 'cancels', 100);
    const before = await balanceOf(service, key);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) {
      const res = await post('/v1/generation/tiny-sdxl/text-to-image', key, { text_prompts: [{ text: 'a red circle' }], steps: 10 }, { prefer: 'respond-async' });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const cancel = (id: string) => fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers: authed(key) });
    const answers = await Promise.all(ids.flatMap((id) => [cancel(id), cancel(id)]));
    for (const res of answers) expect([200, 409]).toContain(res.status);
    const jobs = await jobsOf(key);
    expect(jobs.map((j) => j.status)).toEqual(ids.map(() => 'canceled'));
    expect(await balanceOf(service, key)).toBe(before);
  });
});

describe("A1111's progress and interrupt are the calling key's", () => {
  it("another key of the same account sees no job and cannot interrupt it; the job's own key can", async () => {
    const keyA = await accountWith(service, 'two-keys', 50);
    const keyB = await secondKey(keyA);
    const progress = async (key: string) => (await (await fetch(`${service.url}/sdapi/v1/progress`, { headers: authed(key) })).json()) as { state: { job_count: number; sampling_step: number } };
    const running = post('/sdapi/v1/txt2img', keyA, { prompt: 'a red circle', steps: 150 });
    await waitFor(async () => (await progress(keyA)).state.sampling_step > 2, 'the job to run');
    expect((await progress(keyB)).state.job_count).toBe(0);
    expect((await post('/sdapi/v1/interrupt', keyB, {})).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect((await progress(keyA)).state.job_count).toBe(1);
    expect((await post('/sdapi/v1/interrupt', keyA, {})).status).toBe(200);
    expect((await running).status).toBe(409);
  });
});

describe('client text is parsed in linear time', () => {
  it("png-info reads a 100 KB adversarial infotext at once, and is rate limited as generations are", async () => {
    const key = await accountWith(service, 'png-info', 5);
    for (const spaces of [4000, 30_000]) {
      const png = await pngWithParameters(`x\nSteps: 1,${' '.repeat(spaces)}!`);
      const started = performance.now();
      const res = await post('/sdapi/v1/png-info', key, { image: png.toString('base64') });
      expect(res.status).toBe(200);
      expect(performance.now() - started).toBeLessThan(1000);
      expect(((await res.json()) as { parameters: Record<string, string> }).parameters.Steps).toBe('1');
    }
    const limited = await fetch(`${service.url}/sdapi/v1/png-info`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: '{}' });
    expect(limited.headers.get('x-ratelimit-limit') ?? limited.headers.get('ratelimit-limit') ?? limited.headers.get('ratelimit')).toBeTruthy();
  });

  it('override_settings: a checkpoint of 200,000 spaces is refused at once; a title with a hash suffix resolves', async () => {
    const key = await accountWith(service, 'override', 5);
    const started = performance.now();
    const res = await post('/sdapi/v1/txt2img', key, { prompt: 'x', override_settings: { sd_model_checkpoint: `tiny-sd${' '.repeat(200_000)}` } });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/^override_settings\.sd_model_checkpoint/);
    const titled = await post('/sdapi/v1/txt2img?dry_run=true', key, { prompt: 'x', override_settings: { sd_model_checkpoint: 'tiny-sd [0123abcd]' } });
    expect(titled.status).toBe(200);
    expect(((await titled.json()) as { engine: string }).engine).toBe('tiny-sd');
  });
});

describe('what one key can hold open', () => {
  it('event streams: past the key cap 429 with Retry-After, past the account cap too; health answers; a closed one frees its slot', async () => {
    const keyA = await accountWith(service, 'streams', 20);
    const keyB = await secondKey(keyA);
    const job = (await (await post('/v1/generation/tiny-sdxl/text-to-image', keyA, { text_prompts: [{ text: 'a red circle' }], steps: 10 }, { prefer: 'respond-async' })).json()) as { id: string };
    const open: AbortController[] = [];
    const stream = async (key: string) => {
      const abort = new AbortController();
      const res = await fetch(`${service.url}/v1/jobs/${job.id}/events`, { headers: authed(key), signal: abort.signal });
      if (res.status === 200) open.push(abort);
      else await res.body?.cancel();
      return res;
    };
    try {
      for (let i = 0; i < 3; i++) expect((await stream(keyA)).status).toBe(200);
      const fourth = await stream(keyA);
      expect(fourth.status).toBe(429);
      expect(fourth.headers.get('retry-after')).toBeTruthy();
      // the other key has its own share, until the account's (4) is reached
      expect((await stream(keyB)).status).toBe(200);
      const overAccount = await stream(keyB);
      expect(overAccount.status).toBe(429);
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
      open.shift()!.abort();
      await waitFor(async () => (await stream(keyA)).status === 200 || undefined, 'a slot to come back', 5000);
    } finally {
      for (const abort of open) abort.abort();
      await fetch(`${service.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: authed(keyA) });
    }
  });

  it('base64 images: decoded size over MAX_UPLOAD_BYTES is invalid_file_size; bodies per key and bytes in flight are capped', async () => {
    const key = await accountWith(service, 'base64', 20);
    const before = await balanceOf(service, key);
    // about 300 KB once decoded, over the 256 KB MAX_UPLOAD_BYTES (the body itself is within its limit)
    const big = Buffer.alloc(300_000, 1).toString('base64');
    const res = await post('/sdapi/v1/img2img', key, { prompt: 'x', init_images: [big] });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_file_size', detail: expect.stringMatching(/^init_images\[0\]: .*MAX_UPLOAD_BYTES/) });

    // bodies that arrive slowly: each holds its slot and its bytes while it is read
    const slow = (k: string, bytes: number) => {
      const url = new URL(`${service.url}/sdapi/v1/png-info`);
      const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { ...authed(k), 'content-type': 'application/json', 'content-length': String(bytes) } });
      const answer = new Promise<{ status: number; retryAfter?: string }>((resolve, reject) => {
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined });
        });
        // a refused body may be cut off once its answer is out
        req.on('error', (err) => reject(err));
      });
      answer.catch(() => {});
      req.write('{"image":"');
      return { answer, finish: () => req.end(`${'A'.repeat(bytes - 12)}"}`) };
    };
    const first = slow(key, 400_000);
    const second = slow(key, 400_000);
    await new Promise((r) => setTimeout(r, 300));
    // the key's third body at once: 429 (MAX_UPLOADS_PER_KEY 2)
    const third = await post('/sdapi/v1/png-info', key, { image: 'AAAA' });
    expect(third.status).toBe(429);
    // another key, past the process's 1 MiB of bodies in flight: 503 with Retry-After, before its body is read
    const other = await accountWith(service, 'base64-other', 5);
    const over = slow(other, 400_000);
    const refused = await over.answer;
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).toBeTruthy();
    first.finish();
    second.finish();
    // 400 KB of "A"s decode to 300 KB, over MAX_UPLOAD_BYTES: refused, but read in full and answered
    for (const done of [await first.answer, await second.answer]) expect(done.status).toBe(400);
    // with those two done, the key may send again
    expect((await post('/sdapi/v1/png-info', key, { image: 'AAAA' })).status).toBe(400);
    expect(await balanceOf(service, key)).toBe(before);
  });
});

describe('smaller', () => {
  it('account names with control characters are refused by the admin API', async () => {
    for (const name of ['\u001b[2Jgone', 'two\nlines', 'nul\u0000', 'rtl\u202eevil']) {
      const res = await fetch(`${service.url}/v1/admin/accounts`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
      expect(res.status, JSON.stringify(name)).toBe(400);
      expect(((await res.json()) as { errors?: unknown; message?: string; name: string }).name).toBe('bad_request');
    }
  });

  it("A1111's sd-models and upscalers name engines, never the server's folders", async () => {
    const key = await accountWith(service, 'paths', 1);
    const models = JSON.stringify(await (await fetch(`${service.url}/sdapi/v1/sd-models`, { headers: authed(key) })).json());
    const upscalers = JSON.stringify(await (await fetch(`${service.url}/sdapi/v1/upscalers`, { headers: authed(key) })).json());
    for (const text of [models, upscalers]) {
      expect(text).not.toContain('/');
      expect(text).not.toContain(service.env.MODELS_DIR);
    }
    expect(models).toContain('tiny-sd');
  });
});

