/**
 * The safety checker through the service, with the stand-in checker of ../shared/models/tiny-safety-checker
 * (it flags images more than 20% saturated red) in a tiny-sd folder and, for the upscaler, as
 * SAFETY_CHECKER_DIR: "a large red circle in the center on a red background" is filtered and "a large blue
 * square in the center on a white background" is not. Each mode (blur: really blurred; black: black;
 * refuse: the job fails content_filtered, nothing charged; flag: as made, marked; off) set per account by
 * the admin API, each dialect's signal (Stability v1 and v2beta finish reasons, OpenAI's
 * content_policy_violation through its SDK, A1111's info.nsfw, fal's has_nsfw_concepts and its
 * enable_safety_checker), an upscale that cannot undo a blur, and a checker that fails to load keeping
 * its engine unserved (fail closed).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountWith, ADMIN_TOKEN, authed, balanceOf, MODELS_DIR, type Stack, startService, startStack, waitFor } from './support';

const CHECKER = resolve(import.meta.dirname, '../../../shared/models/tiny-safety-checker');
const FLAGGED = 'a large red circle in the center on a red background';
const CLEAN = 'a large blue square in the center on a white background';

let stack: Stack;
let models: string;

/** An engine folder made of links to another's files, plus extra entries. */
function engineOf(from: string, to: string, extra: Record<string, string> = {}): void {
  mkdirSync(to);
  for (const name of readdirSync(from)) symlinkSync(join(from, name), join(to, name));
  for (const [name, target] of Object.entries(extra)) symlinkSync(target, join(to, name));
}

beforeAll(async () => {
  models = mkdtempSync(join(tmpdir(), 'sdq-safety-models-'));
  engineOf(join(MODELS_DIR, 'tiny-sd'), join(models, 'tiny-sd'), { safety_checker: join(CHECKER, 'safety_checker'), feature_extractor: join(CHECKER, 'feature_extractor') });
  engineOf(join(MODELS_DIR, 'tiny-upscaler-x2'), join(models, 'tiny-upscaler-x2'));
  // an engine whose manifest names a checker that cannot load: a graph that is not one
  const broken = join(models, '..', `${models.split('/').pop()}-broken-checker`);
  cpSync(CHECKER, broken, { recursive: true });
  writeFileSync(join(broken, 'safety_checker', 'model.onnx'), 'not an onnx graph');
  mkdirSync(join(models, 'tiny-sd-checked'));
  for (const name of readdirSync(join(MODELS_DIR, 'tiny-sd'))) if (name !== 'sdq-engine.json') symlinkSync(join(MODELS_DIR, 'tiny-sd', name), join(models, 'tiny-sd-checked', name));
  writeFileSync(join(models, 'tiny-sd-checked', 'sdq-engine.json'), JSON.stringify({ safety_checker: broken }));
  stack = await startStack({
    env: { MODELS_DIR: models, REQUIRE_WORKER: 'true' },
    workerEnv: { MODELS_DIR: models, SAFETY_CHECKER_DIR: CHECKER, WORKER_PRELOAD: 'all' },
  });
}, 90_000);
afterAll(async () => {
  await stack?.close();
  rmSync(models, { recursive: true, force: true });
  rmSync(`${models}-broken-checker`, { recursive: true, force: true });
});

async function accountIn(mode: string | null, name: string): Promise<string> {
  const key = await accountWith(stack.service, name, 100);
  const account = (await (await fetch(`${stack.service.url}/v1/user/account`, { headers: authed(key) })).json()) as { id: string };
  const res = await fetch(`${stack.service.url}/v1/admin/accounts/${account.id}/safety`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ mode }) });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { safety_mode: string }).safety_mode).toBe(mode ?? '');
  return key;
}

async function v1(key: string, text: string, accept = 'application/json') {
  return fetch(`${stack.service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json', accept }), body: JSON.stringify({ text_prompts: [{ text }], steps: 20, seed: 3 }) });
}

async function rgb(png: Buffer) {
  return (await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

/** Mean squared difference of horizontal neighbours: the image's high-frequency energy. */
async function highFrequency(png: Buffer): Promise<number> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  for (let y = 0; y < info.height; y++) for (let x = 1; x < info.width; x++) for (let c = 0; c < 3; c++) sum += (data[(y * info.width + x) * 3 + c] - data[(y * info.width + x - 1) * 3 + c]) ** 2;
  return sum / (info.height * (info.width - 1) * 3);
}

describe('the safety checker through the service', () => {
  it('blur (SAFETY_MODE): Stability v1 answers finishReason CONTENT_FILTERED with a blurred image, charged as made; a clean image is SUCCESS', async () => {
    const key = await accountWith(stack.service, 'safety-default', 100);
    const before = await balanceOf(stack.service, key);
    const res = await v1(key, FLAGGED);
    const body = (await res.json()) as { artifacts: { base64: string; finishReason: string }[] };
    expect(body.artifacts[0].finishReason).toBe('CONTENT_FILTERED');
    const clean = (await (await v1(key, CLEAN)).json()) as { artifacts: { finishReason: string }[] };
    expect(clean.artifacts[0].finishReason).toBe('SUCCESS');
    const image = await v1(key, FLAGGED, 'image/png');
    expect(image.headers.get('finish-reason')).toBe('CONTENT_FILTERED');
    // blurred: the original (an account with the checker off) has far more high-frequency energy
    const off = await accountIn('off', 'safety-off');
    const original = Buffer.from(((await (await v1(off, FLAGGED)).json()) as { artifacts: { base64: string; finishReason: string }[] }).artifacts[0].base64, 'base64');
    const blurred = Buffer.from(body.artifacts[0].base64, 'base64');
    expect(await highFrequency(blurred)).toBeLessThan((await highFrequency(original)) / 10);
    // charged as made (SAFETY_REFUND is off): three stills
    const jobs = ((await (await fetch(`${stack.service.url}/v1/jobs?limit=3`, { headers: authed(key) })).json()) as { data: { credits_charged: number; artifacts: { content_filtered: boolean }[]; params: { safety: string } }[] }).data;
    expect(jobs.map((j) => j.artifacts[0].content_filtered)).toEqual([true, false, true]);
    expect(jobs.every((j) => j.params.safety === 'blur')).toBe(true);
    expect(before - (await balanceOf(stack.service, key))).toBeCloseTo(jobs.reduce((s, j) => s + j.credits_charged, 0), 6);
    expect(jobs[0].credits_charged).toBeGreaterThan(0);
  });

  it('per account: black is black, flag is the image as made (marked), refuse fails the job content_filtered and charges nothing', async () => {
    const black = await accountIn('black', 'safety-black');
    const blackImage = await v1(black, FLAGGED, 'image/png');
    expect(blackImage.headers.get('finish-reason')).toBe('CONTENT_FILTERED');
    expect((await rgb(Buffer.from(await blackImage.arrayBuffer()))).every((v) => v === 0)).toBe(true);

    const flag = await accountIn('flag', 'safety-flag');
    const off = await accountIn('off', 'safety-off-2');
    const flagged = await v1(flag, FLAGGED, 'image/png');
    const unchecked = await v1(off, FLAGGED, 'image/png');
    expect([flagged.headers.get('finish-reason'), unchecked.headers.get('finish-reason')]).toEqual(['CONTENT_FILTERED', 'SUCCESS']);
    expect((await rgb(Buffer.from(await flagged.arrayBuffer()))).equals(await rgb(Buffer.from(await unchecked.arrayBuffer())))).toBe(true);

    const refuse = await accountIn('refuse', 'safety-refuse');
    const before = await balanceOf(stack.service, refuse);
    const refused = await v1(refuse, FLAGGED);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { name: string }).name).toBe('content_filtered');
    expect(await balanceOf(stack.service, refuse)).toBe(before);
    expect((await v1(refuse, CLEAN)).status).toBe(200);
  });

  it("each dialect's signal: v2beta finish_reason, OpenAI's content_policy_violation (refuse) through its SDK, A1111's info.nsfw, fal's has_nsfw_concepts", async () => {
    const key = await accountWith(stack.service, 'safety-dialects', 100);
    const form = new FormData();
    form.append('prompt', FLAGGED);
    const v2 = await fetch(`${stack.service.url}/v2beta/stable-image/generate/core`, { method: 'POST', headers: authed(key, { accept: 'application/json' }), body: form });
    expect(((await v2.json()) as { finish_reason: string }).finish_reason).toBe('CONTENT_FILTERED');

    const a1111 = await fetch(`${stack.service.url}/sdapi/v1/txt2img`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: FLAGGED, steps: 20, seed: 3, batch_size: 2 }) });
    expect((JSON.parse(((await a1111.json()) as { info: string }).info) as { nsfw: boolean[] }).nsfw).toEqual([true, true]);

    const fal = await fetch(`${stack.service.url}/fal/sdq/tiny-sd`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: FLAGGED, seed: 3, num_images: 1 }) });
    expect(((await fal.json()) as { has_nsfw_concepts: boolean[] }).has_nsfw_concepts).toEqual([true]);
    // enable_safety_checker: false is not honoured for a blur account...
    const asked = await fetch(`${stack.service.url}/fal/sdq/tiny-sd`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: FLAGGED, seed: 3, enable_safety_checker: false }) });
    expect(((await asked.json()) as { has_nsfw_concepts: boolean[] }).has_nsfw_concepts).toEqual([true]);
    // ...and is for a flag account: nothing checked
    const flag = await accountIn('flag', 'safety-fal-flag');
    const unchecked = await fetch(`${stack.service.url}/fal/sdq/tiny-sd`, { method: 'POST', headers: authed(flag, { 'content-type': 'application/json' }), body: JSON.stringify({ prompt: FLAGGED, seed: 3, enable_safety_checker: false }) });
    expect(((await unchecked.json()) as { has_nsfw_concepts: boolean[] }).has_nsfw_concepts).toEqual([false]);

    const refuse = await accountIn('refuse', 'safety-openai');
    const openai = new OpenAI({ apiKey: refuse, baseURL: `${stack.service.url}/v1` });
    const error = await openai.images.generate({ model: 'tiny-sd', prompt: FLAGGED, size: '256x256' }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, code: 'content_policy_violation' });
  });

  it('SAFETY_REFUND=true: a filtered image is given back at settle, and the ledger says why; a clean one is charged', async () => {
    // a second API on the same Redis and worker, with the switch on
    const refunding = await startService(stack.redis, { env: { ...stack.service.env, SAFETY_REFUND: 'true' } });
    try {
      const key = await accountWith(refunding, 'safety-refund', 100);
      const before = await balanceOf(refunding, key);
      const post = (text: string) => fetch(`${refunding.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ text_prompts: [{ text }], steps: 20, seed: 3 }) });
      expect(((await (await post(FLAGGED)).json()) as { artifacts: { finishReason: string }[] }).artifacts[0].finishReason).toBe('CONTENT_FILTERED');
      expect(((await (await post(CLEAN)).json()) as { artifacts: { finishReason: string }[] }).artifacts[0].finishReason).toBe('SUCCESS');
      const jobs = ((await (await fetch(`${refunding.url}/v1/jobs?limit=2`, { headers: authed(key) })).json()) as { data: { id: string; credits_charged: number }[] }).data;
      const [clean, filtered] = jobs;
      expect(filtered.credits_charged).toBe(0);
      expect(clean.credits_charged).toBeGreaterThan(0);
      expect(before - (await balanceOf(refunding, key))).toBeCloseTo(clean.credits_charged, 6);
      const ledger = ((await (await fetch(`${refunding.url}/v1/user/ledger`, { headers: authed(key) })).json()) as { data: { type: string; job_id?: string; reason?: string; amount: number; charged?: number }[] }).data;
      const entries = ledger.filter((e) => e.job_id === filtered.id).map((e) => [e.type, e.reason ?? null, e.charged ?? null]);
      expect(entries).toEqual(expect.arrayContaining([['hold', null, null], ['settle', null, 0], ['release', 'content_filtered', null]]));
    } finally {
      await refunding.close();
    }
  });

  it("an animation's frames go through the checker: each filtered frame is marked, and the file's answer says so", async () => {
    const key = await accountWith(stack.service, 'safety-animation', 100);
    const res = await fetch(`${stack.service.url}/v1/generation/tiny-sd/animation`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', accept: 'image/webp' }),
      body: JSON.stringify({ keyframes: [{ frame: 0, text_prompts: [{ text: FLAGGED }], seed: 3 }, { frame: 2, text_prompts: [{ text: CLEAN }], seed: 3 }], frames: 3, steps: 20 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('finish-reason')).toBe('CONTENT_FILTERED');
    const job = (await (await fetch(`${stack.service.url}/v1/jobs/${res.headers.get('x-job-id')}`, { headers: authed(key) })).json()) as { artifacts: { content_filtered: boolean }[] };
    expect(job.artifacts.map((a) => a.content_filtered)).toEqual([false, true, expect.any(Boolean), false]);
  });

  it('an upscale goes through the checker too: it cannot undo a blur', async () => {
    // the original red image (checker off), upscaled for an account whose mode blurs
    const off = await accountIn('off', 'safety-upscale-source');
    const original = Buffer.from(await (await v1(off, FLAGGED, 'image/png')).arrayBuffer());
    const key = await accountWith(stack.service, 'safety-upscale', 100);
    const form = new FormData();
    form.append('image', new Blob([original], { type: 'image/png' }), 'red.png');
    const res = await fetch(`${stack.service.url}/v1/generation/tiny-upscaler-x2/image-to-image/upscale`, { method: 'POST', headers: authed(key, { accept: 'image/png' }), body: form });
    expect(res.status).toBe(200);
    expect(res.headers.get('finish-reason')).toBe('CONTENT_FILTERED');
    const upscaled = Buffer.from(await res.arrayBuffer());
    expect((await sharp(upscaled).metadata()).width).toBe(256);
    expect(await highFrequency(upscaled)).toBeLessThan((await highFrequency(await sharp(original).resize(256, 256).png().toBuffer())) / 5);
  });

  it('a checker that fails to load keeps its engine unserved, with the reason (fail closed)', async () => {
    const key = await accountWith(stack.service, 'safety-closed', 100);
    const states = await waitFor(async () => {
      const workers = (await (await fetch(`${stack.service.url}/v1/admin/workers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { data: { engine_states: Record<string, { state: string; reason?: string }> }[] };
      return workers.data[0]?.engine_states['tiny-sd-checked'];
    }, 'the broken checker to be reported');
    expect(states).toMatchObject({ state: 'failed', reason: expect.stringContaining('safety checker') });
    const before = await balanceOf(stack.service, key);
    const res = await fetch(`${stack.service.url}/v1/generation/tiny-sd-checked/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: JSON.stringify({ text_prompts: [{ text: CLEAN }], steps: 10 }) });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { name: string }).name).toBe('engine_unavailable');
    expect(await balanceOf(stack.service, key)).toBe(before);
  });
});
