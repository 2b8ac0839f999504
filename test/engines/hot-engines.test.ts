/**
 * An engine folder added to MODELS_DIR while the API and a worker run (ENGINE_REFRESH_MS apart): the API
 * describes it and the worker (serving every engine) loads, measures and claims it, and a generation
 * through it succeeds, no restart; removed, the worker stops serving it and the API forgets it. Real
 * API, real worker, the tiny models.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { ADMIN_TOKEN, authed, MODELS_DIR, type Service, startService, startTestWorker, type TestWorker, waitFor } from '../e2e/support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;
const models = mkdtempSync(join(tmpdir(), 'sdq-hot-models-'));

beforeAll(async () => {
  cpSync(join(MODELS_DIR, 'tiny-sd'), join(models, 'tiny-sd'), { recursive: true });
  redis = await startTestRedis();
  service = await startService(redis, { env: { MODELS_DIR: models, ENGINE_REFRESH_MS: '200', SWEEP_INTERVAL: '1' } });
  worker = await startTestWorker(service, { ENGINE_REFRESH_MS: '200' });
  key = await service.apiKey('hot');
});
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
  rmSync(models, { recursive: true, force: true });
});

const workersOf = async () =>
  Object.fromEntries(((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: { workers: number } }[]).map((e) => [e.id, e.capabilities.workers]));

describe('engines added and removed while the service runs', () => {
  it('a folder copied in becomes an engine the worker serves: a generation through it succeeds, without a restart', async () => {
    expect(await workersOf()).toEqual({ 'tiny-sd': 1 });
    cpSync(join(MODELS_DIR, 'tiny-sd'), join(models, 'tiny-sd-b'), { recursive: true });
    await waitFor(async () => (await workersOf())['tiny-sd-b'] === 1, 'the worker to serve tiny-sd-b', 30_000);
    const res = await fetch(`${service.url}/v1/generation/tiny-sd-b/text-to-image`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', accept: 'image/png' }),
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 7 }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    // and the engine it was copied from still serves
    expect(await workersOf()).toEqual({ 'tiny-sd': 1, 'tiny-sd-b': 1 });
  });

  it('a folder removed stops being served and is forgotten; the others serve on', async () => {
    rmSync(join(models, 'tiny-sd-b'), { recursive: true, force: true });
    await waitFor(async () => !('tiny-sd-b' in (await workersOf())), 'the API to forget tiny-sd-b', 30_000);
    expect((await fetch(`${service.url}/v1/generation/tiny-sd-b/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: '{"text_prompts":[{"text":"a"}]}' })).status).toBe(404);
    const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', accept: 'image/png' }),
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10 }),
    });
    expect(res.status).toBe(200);
    expect(worker.engines).toContain('tiny-sd');
  });

  it('a folder still being copied is not taken until its files stop changing', async () => {
    const dir = join(models, 'tiny-sd-copying');
    cpSync(join(MODELS_DIR, 'tiny-sd'), dir, { recursive: true });
    // the copy goes on: a file grows faster than the worker looks (ENGINE_REFRESH_MS 200)
    const growing = join(dir, 'unet', 'weights.pb');
    for (let i = 0; i < 30; i++) {
      appendFileSync(growing, Buffer.alloc(1024));
      await new Promise((r) => setTimeout(r, 50));
      expect(worker.engines).not.toContain('tiny-sd-copying');
    }
    await waitFor(async () => worker.engines.includes('tiny-sd-copying'), 'the worker to take the finished folder', 30_000);
    rmSync(dir, { recursive: true, force: true });
    await waitFor(async () => !worker.engines.includes('tiny-sd-copying'), 'the worker to drop it', 30_000);
  });

  it("a folder that does not load is 'available' until a job asks for it, then 'failed' (its reason on /v1/admin/workers) and its queued job fails, refunded", async () => {
    cpSync(join(MODELS_DIR, 'tiny-sd'), join(models, 'tiny-sd-broken'), { recursive: true });
    writeFileSync(join(models, 'tiny-sd-broken', 'unet', 'model.onnx'), 'not a graph');
    const stateOf = async () =>
      ((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: { state: string } }[]).find((e) => e.id === 'tiny-sd-broken')?.capabilities.state;
    // on disk and served, not loaded: nothing has asked for it
    await waitFor(async () => (await stateOf()) === 'available', 'tiny-sd-broken to be available', 30_000);
    const res = await fetch(`${service.url}/v1/generation/tiny-sd-broken/text-to-image`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await waitFor(async () => (await stateOf()) === 'failed', 'tiny-sd-broken to be failed', 30_000);
    const workers = (await (await fetch(`${service.url}/v1/admin/workers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { data: { engine_states: Record<string, { state: string; reason?: string }> }[] };
    expect(workers.data[0].engine_states['tiny-sd-broken']).toEqual({ state: 'failed', reason: expect.stringMatching(/unet\/model\.onnx/) });
    expect(((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: { state: string } }[]).find((e) => e.id === 'tiny-sd')?.capabilities.state).toBe('ready');
    // the job it was loaded for does not wait for nothing: failed at the next sweep, its credits back
    const job = await waitFor(async () => {
      const body = (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as { status: string; error: { name: string } | null; credits_charged: number | null };
      return body.status === 'failed' ? body : undefined;
    }, 'the job to fail', 15_000);
    expect(job).toMatchObject({ error: { name: 'engine_unavailable' }, credits_charged: 0 });
    // a new request is refused at once, naming the cause
    const refused = await fetch(`${service.url}/v1/generation/tiny-sd-broken/text-to-image`, { method: 'POST', headers: authed(key, { 'content-type': 'application/json' }), body: '{"text_prompts":[{"text":"a"}]}' });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { message: string }).message).toMatch(/failed to load on every live worker/);
  });
});
