/**
 * Engines added to or removed from MODELS_DIR while the API runs (ENGINE_REFRESH_MS apart): an added
 * folder is described and priced without a restart; a removed one is an unknown engine, its queued jobs
 * fail with engine_unavailable and their credits come back; a hidden (staging) folder is never taken.
 */
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

let redis: TestRedis;
let api: TestApi;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, ENGINE_REFRESH_MS: '200' });
  key = (await api.account('refresh')).api_key;
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
});

const auth = () => ({ authorization: `Bearer ${key}` });
const ids = async () => ((await (await fetch(`${api.url}/v1/engines/list`, { headers: auth() })).json()) as { id: string }[]).map((e) => e.id);
const balance = async () => ((await (await fetch(`${api.url}/v1/user/balance`, { headers: auth() })).json()) as { credits: number }).credits;
const until = async (check: () => Promise<boolean>, what: string) => {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};
const t2i = (engine: string, query = '') =>
  fetch(`${api.url}/v1/generation/${engine}/text-to-image${query}`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', prefer: 'respond-async' }, body: JSON.stringify({ text_prompts: [{ text: 'a' }], steps: 10 }) });

describe('engines added and removed at run time', () => {
  it('describes and prices a folder added to MODELS_DIR without a restart; a hidden one is never taken', async () => {
    const models = api.config.modelsDir;
    expect(await ids()).not.toContain('gen-new');
    mkdirSync(join(models, '.pull-gen-staged'));
    cpSync(join(models, 'gen-a'), join(models, '.pull-gen-staged'), { recursive: true });
    cpSync(join(models, 'gen-a'), join(models, 'gen-new'), { recursive: true });
    await until(async () => (await ids()).includes('gen-new'), 'gen-new listed');
    expect((await ids()).filter((id) => id.includes('staged'))).toEqual([]);
    expect((await t2i('gen-new', '?dry_run=true')).status).toBe(200);
  });

  it('a folder removed is an unknown engine; its queued job fails engine_unavailable and is refunded', async () => {
    const models = api.config.modelsDir;
    cpSync(join(models, 'gen-a'), join(models, 'gen-gone'), { recursive: true });
    await until(async () => (await ids()).includes('gen-gone'), 'gen-gone listed');
    const before = await balance();
    const queued = await t2i('gen-gone');
    expect(queued.status).toBe(202);
    const job = (await queued.json()) as { id: string };
    expect(await balance()).toBeLessThan(before);
    rmSync(join(models, 'gen-gone'), { recursive: true, force: true });
    await until(async () => !(await ids()).includes('gen-gone'), 'gen-gone gone');
    expect((await t2i('gen-gone')).status).toBe(404);
    await until(async () => ((await (await fetch(`${api.url}/v1/jobs/${job.id}`, { headers: auth() })).json()) as { status: string }).status === 'failed', 'the job failed');
    const failed = (await (await fetch(`${api.url}/v1/jobs/${job.id}`, { headers: auth() })).json()) as { error: { name: string } };
    expect(failed.error.name).toBe('engine_unavailable');
    expect(await balance()).toBe(before);
  });

  it('DELETE /v1/admin/models/{id} removes the folder and the engine at once; a bad id is 400, an unknown one 404', async () => {
    const models = api.config.modelsDir;
    cpSync(join(models, 'gen-a'), join(models, 'gen-rm'), { recursive: true });
    await until(async () => (await ids()).includes('gen-rm'), 'gen-rm listed');
    const res = await api.admin('/v1/admin/models/gen-rm', { method: 'DELETE' });
    expect([res.status, await res.json()]).toEqual([200, { id: 'gen-rm', removed: true }]);
    expect(existsSync(join(models, 'gen-rm'))).toBe(false);
    await until(async () => !(await ids()).includes('gen-rm'), 'gen-rm dropped');
    expect((await api.admin('/v1/admin/models/gen-rm', { method: 'DELETE' })).status).toBe(404);
    const bad = await api.admin('/v1/admin/models/..%2Fgen-a', { method: 'DELETE' });
    expect(bad.status).toBe(400);
    expect(existsSync(join(models, 'gen-a'))).toBe(true);
    expect((await api.admin('/v1/admin/models/.hidden', { method: 'DELETE' })).status).toBe(400);
  });
});
