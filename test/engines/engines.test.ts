/**
 * Engines through the API: size limits from the family and the manifest (refused before any hold),
 * aliases from manifests and ENGINE_ALIASES (listed and usable), manifest defaults and price entries,
 * and a bad manifest that leaves the rest of the API serving. Engine folders hold JSON only: the API
 * never loads a graph.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNameForEngine, STYLE_PRESET_NAMES } from '@sdq/contracts';
import { describeEngine, EngineManifestError, type GenerationEngineInfo, readManifest, SDXL_SIZES } from '@sdq/pipeline/engines';
import { applyStyle, sizeForShape } from '../../apps/api/src/submission';
import { v2betaEngines } from '../../apps/api/src/dialects/stability-v2beta/routes';
import { redisOptionsFromUrl } from '../../apps/api/src/config';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { expectError } from '../security/support';

/** A JSON-only engine folder: native side = sample_size x 8. */
function engineFolder(root: string, id: string, opts: { className?: string; sampleSize: number; manifest?: unknown }) {
  const dir = join(root, id);
  for (const [part, config] of [['unet', { sample_size: opts.sampleSize }], ['vae_decoder', { block_out_channels: [1, 2, 3, 4] }], ['vae_encoder', {}]] as const) {
    mkdirSync(join(dir, part), { recursive: true });
    writeFileSync(join(dir, part, 'config.json'), JSON.stringify(config));
  }
  writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: opts.className ?? 'StableDiffusionPipeline' }));
  if (opts.manifest !== undefined) writeFileSync(join(dir, 'sdq-engine.json'), typeof opts.manifest === 'string' ? opts.manifest : JSON.stringify(opts.manifest));
}

let redis: TestRedis;
let api: TestApi;
let models: string;
let key: string;
const logs: { msg: string; engine?: string; reason?: string }[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  models = mkdtempSync(join(tmpdir(), 'sdq-engines-'));
  engineFolder(models, 'small', { sampleSize: 16 }); // native 128
  engineFolder(models, 'sd15', { sampleSize: 64 }); // native 512
  engineFolder(models, 'sdxl-base', { className: 'StableDiffusionXLPipeline', sampleSize: 128, manifest: { aliases: ['stable-diffusion-xl-1024-v1-0'], price: 'stable-diffusion-xl-1024-v1-0' } });
  engineFolder(models, 'custom', { sampleSize: 64, manifest: { allowed_sizes: ['512x512', '768x512'], steps: 12, cfg_scale: 5, sampler: 'DDIM' } });
  engineFolder(models, 'broken', { sampleSize: 64, manifest: { alias: ['typo'] } });
  engineFolder(models, 'styled', { sampleSize: 64, manifest: { style_presets: { anime: 'anime style', photographic: '' } } });
  engineFolder(models, 'flux', { className: 'FluxPipeline', sampleSize: 128 });
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, MODELS_DIR: models, ENGINE_ALIASES: 'stable-diffusion-v1-6=sd15, tiny=small' }, { logger: pino({ level: 'info' }, sink) });
  key = (await api.account('alice')).api_key;
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
  if (models) rmSync(models, { recursive: true, force: true });
});

const t2i = (engine: string, body: Record<string, unknown>, query = '?dry_run=true') =>
  fetch(`${api.url}/v1/generation/${engine}/text-to-image${query}`, {
    method: 'POST',
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], ...body }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' },
  });

describe('engine sizes', () => {
  it.each([
    ['small', 512, 512, true],
    ['small', 128, 128, true],
    ['small', 576, 576, false],
    ['small', 1024, 1024, false],
    ['small', 512, 448, true],
    ['sd15', 1024, 1024, true],
    ['sd15', 192, 512, false],
    ['sdxl-base', 1024, 1024, true],
    ['sdxl-base', 1536, 640, true],
    ['sdxl-base', 1024, 960, false],
    ['sdxl-base', 512, 512, false],
    ['custom', 768, 512, true],
    ['custom', 512, 768, false],
  ] as const)('%s %ix%i: %s', async (engine, width, height, ok) => {
    const res = await t2i(engine, { width, height });
    if (ok) {
      expect(res.status, await res.clone().text()).toBe(200);
      return;
    }
    const error = await expectError(res, 400, 'invalid_height_or_width');
    expect(error.message).toContain(`${width}x${height} is not a size of engine ${engine}; allowed:`);
    if (engine === 'sdxl-base') expect(error.message).toContain(SDXL_SIZES.join(', '));
  });

  it('an oversized request holds nothing and queues nothing', async () => {
    await expectError(await t2i('small', { width: 1024, height: 1024 }, ''), 400, 'invalid_height_or_width');
    const headers = { authorization: `Bearer ${key}` };
    expect(await (await fetch(`${api.url}/v1/user/balance`, { headers })).json()).toEqual({ credits: 10 });
    expect(((await (await fetch(`${api.url}/v1/jobs`, { headers })).json()) as { data: unknown[] }).data).toEqual([]);
  });
});

describe('aliases and manifests', () => {
  it('lists every alias as an engine of its own, and leaves out the engine whose manifest is bad', async () => {
    const list = (await (await fetch(`${api.url}/v1/engines/list`, { headers: { authorization: `Bearer ${key}` } })).json()) as { id: string; alias_of: string | null; capabilities: { family: string } }[];
    expect(list.map((e) => [e.id, e.alias_of])).toEqual([
      ['custom', null],
      ['flux', null],
      ['sd15', null],
      ['sdxl-base', null],
      ['small', null],
      ['styled', null],
      ['stable-diffusion-xl-1024-v1-0', 'sdxl-base'],
      ['stable-diffusion-v1-6', 'sd15'],
      ['tiny', 'small'],
    ]);
    expect(list.find((e) => e.id === 'stable-diffusion-xl-1024-v1-0')!.capabilities.family).toBe('stable-diffusion-xl');
    const refused = logs.find((l) => l.msg === 'engine not served: its manifest is invalid');
    expect(refused).toMatchObject({ engine: 'broken', reason: expect.stringMatching(/broken\/sdq-engine\.json: alias: is not a manifest field/) });
  });

  it('a folder of a family sdq does not serve is listed without a family and answered 503, never queued', async () => {
    const error = await expectError(await t2i('flux', {}, ''), 503, 'engine_unavailable');
    expect(error.message).toMatch(/engine flux is a FluxPipeline folder, a family sdq does not serve/);
  });

  it('an alias reaches its engine: the job is the engine\'s, queued on its queue, at its price', async () => {
    const res = await t2i('stable-diffusion-v1-6', { width: 512, height: 512, steps: 10 }, '');
    expect(res.status, await res.clone().text()).toBe(202);
    const job = (await res.json()) as { id: string; engine: string };
    expect(job.engine).toBe('sd15');
    const queue = new Queue(queueNameForEngine('sd15'), { connection: redisOptionsFromUrl(redis.url), prefix: redis.prefix });
    try {
      expect((await queue.getJob(job.id))?.data.engineId).toBe('sd15');
    } finally {
      await queue.close();
    }
    await fetch(`${api.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
    // The manifest's price entry: Stability's SDXL figure through the alias and the folder alike.
    for (const id of ['stable-diffusion-xl-1024-v1-0', 'sdxl-base']) {
      const dry = (await (await t2i(id, { width: 1024, height: 1024, steps: 20 })).json()) as { credits: number; engine: string };
      expect(dry).toMatchObject({ credits: 0.9, engine: 'sdxl-base' });
    }
    expect(((await (await t2i('sdxl-base', { width: 1024, height: 1024, steps: 50 })).json()) as { credits: number }).credits).toBe(1.5);
  });

  it('manifest defaults apply when the request gives none; what the request gives wins', async () => {
    const queue = new Queue(queueNameForEngine('custom'), { connection: redisOptionsFromUrl(redis.url), prefix: redis.prefix });
    try {
      for (const [body, expected] of [
        [{}, { steps: 12, cfgScale: 5, sampler: 'DDIM' }],
        [{ steps: 20, cfg_scale: 7, sampler: 'K_EULER' }, { steps: 20, cfgScale: 7, sampler: 'K_EULER' }],
      ] as const) {
        const res = await t2i('custom', { width: 512, height: 512, ...body }, '');
        expect(res.status, await res.clone().text()).toBe(202);
        const { id } = (await res.json()) as { id: string };
        expect((await queue.getJob(id))?.data.params).toMatchObject(expected);
        await fetch(`${api.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
      }
    } finally {
      await queue.close();
    }
  });

  it("style presets come from the engine's table: Stability's without one, the operator's with one", async () => {
    const promptsOf = async (engine: string, style: string) => {
      const res = await t2i(engine, { width: 512, height: 512, style_preset: style, text_prompts: [{ text: 'a red circle' }, { text: 'blurry', weight: -1 }] }, '');
      expect(res.status, await res.clone().text()).toBe(202);
      const { id } = (await res.json()) as { id: string };
      const queue = new Queue(queueNameForEngine(engine), { connection: redisOptionsFromUrl(redis.url), prefix: redis.prefix });
      try {
        return (await queue.getJob(id))?.data.params.prompts as { text: string; weight?: number }[];
      } finally {
        await fetch(`${api.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
        await queue.close();
      }
    };
    // no table: Stability's text after the positive prompt, the negative one left alone
    expect(await promptsOf('sd15', 'anime')).toEqual([
      { text: 'a red circle, anime artwork, anime style, key visual, vibrant, studio anime, highly detailed' },
      { text: 'blurry', weight: -1 },
    ]);
    // the operator's table: its text, "" adds nothing, and a preset it does not name adds nothing
    expect((await promptsOf('styled', 'anime'))[0].text).toBe('a red circle, anime style');
    expect((await promptsOf('styled', 'photographic'))[0].text).toBe('a red circle');
    expect((await promptsOf('styled', 'cinematic'))[0].text).toBe('a red circle');
  });

  it('the embedded tiny engines accept every preset and add no words their vocabulary lacks', () => {
    for (const id of ['tiny-sd', 'tiny-sdxl', 'tiny-sd3']) {
      const engine = describeEngine(join('models', id), id)!;
      expect(Object.keys(engine.manifest.style_presets!).sort(), id).toEqual([...STYLE_PRESET_NAMES].sort());
      for (const style of STYLE_PRESET_NAMES) expect(applyStyle(engine, [{ text: 'a red circle' }], style), `${id} ${style}`).toEqual([{ text: 'a red circle' }]);
    }
  });

  it('a style_presets table with a name Stability does not have, or text that is not a string, is a bad manifest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-style-'));
    try {
      for (const [table, message] of [
        [{ vaporwave: 'neon' }, /style_presets\.vaporwave: is not a Stability style preset/],
        [{ anime: 3 }, /style_presets\.anime: must be prompt text/],
        ['anime', /style_presets: must be an object/],
        [JSON.parse('{"__proto__": "x"}'), /style_presets\.__proto__: is not a Stability style preset/],
      ] as const) {
        writeFileSync(join(dir, 'sdq-engine.json'), JSON.stringify({ style_presets: table }));
        expect(() => readManifest(dir)).toThrow(EngineManifestError);
        expect(() => readManifest(dir)).toThrow(message);
      }
      writeFileSync(join(dir, 'sdq-engine.json'), JSON.stringify({ style_presets: { anime: 'anime style' } }));
      const table = readManifest(dir).style_presets!;
      expect(Object.getPrototypeOf(table)).toBe(null);
      expect({ ...table }).toEqual({ anime: 'anime style' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("v2beta aspect ratios: each of Stability's nine is an SDXL size on SDXL; the nearest of the engine's own sizes elsewhere", () => {
    const sdxl = describeEngine(join(models, 'sdxl-base'), 'sdxl-base') as GenerationEngineInfo;
    const sd15 = describeEngine(join(models, 'sd15'), 'sd15') as GenerationEngineInfo;
    const small = describeEngine(join(models, 'small'), 'small') as GenerationEngineInfo;
    const ratio = (a: string) => a.split(':').map(Number).reduce((w, h) => w / h);
    const expected: Record<string, string> = {
      '1:1': '1024x1024', '16:9': '1344x768', '9:16': '768x1344', '21:9': '1536x640', '9:21': '640x1536',
      '3:2': '1216x832', '2:3': '832x1216', '5:4': '1152x896', '4:5': '896x1152',
    };
    for (const [aspect, size] of Object.entries(expected)) {
      const { width, height } = sizeForShape(sdxl, ratio(aspect));
      expect(`${width}x${height}`, aspect).toBe(size);
    }
    expect(sizeForShape(sd15, 1)).toEqual({ width: 512, height: 512 });
    expect(sizeForShape(sd15, 16 / 9)).toEqual({ width: 704, height: 384 });
    expect(sizeForShape(sd15, 9 / 16)).toEqual({ width: 384, height: 704 });
    expect(sizeForShape(small, 1)).toEqual({ width: 128, height: 128 });
    expect(sizeForShape(small, 16 / 9)).toEqual({ width: 192, height: 128 });
  });

  it('V2BETA_ENGINES: a service or engine that does not exist, or the wrong kind of engine, stops start-up', () => {
    const map = new Map([['sd15', describeEngine(join(models, 'sd15'), 'sd15')!]]);
    expect(v2betaEngines([['core', 'sd15']], map, new Map()).get('core')?.id).toBe('sd15');
    expect(() => v2betaEngines([['video', 'sd15']], map, new Map())).toThrow(/V2BETA_ENGINES names the service video/);
    expect(() => v2betaEngines([['core', 'nope']], map, new Map())).toThrow(/nope is not an engine/);
    expect(() => v2betaEngines([['upscale-fast', 'sd15']], map, new Map())).toThrow(/needs an upscale engine/);
  });

  it('refuses at start-up an ENGINE_ALIASES that names no engine, or an id twice', async () => {
    for (const [aliases, message] of [
      ['x=nope', /ENGINE_ALIASES names x=nope, but nope is not an engine under MODELS_DIR/],
      ['small=sd15', /ENGINE_ALIASES names small for sd15, but small is already an engine/],
      ['stable-diffusion-xl-1024-v1-0=sd15', /already an alias of sdxl-base/],
    ] as const) {
      await expect(startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: `${redis.prefix}x`, MODELS_DIR: models, ENGINE_ALIASES: aliases })).rejects.toThrow(message);
    }
    await expect(startTestApi({ REDIS_URL: redis.url, MODELS_DIR: models, ENGINE_ALIASES: 'a b' })).rejects.toThrow(/Invalid environment: ENGINE_ALIASES must be alias=engine pairs/);
  });
});
