/**
 * POST /v1/admin/models and GET /v1/admin/models/pulls/{id} against a Hub stand-in serving
 * models/tiny-sd: a pull runs in the background and its state is readable, the engine folder arrives
 * whole; bad input is a 400 naming the field before any request, an engine id in use a 409, a gated
 * repo a failed pull saying what to do.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PullObject } from '@sdq/contracts';
import { type HubStandIn, startHubStandIn } from '../../../packages/hub/test/support/hub-stand-in';
import { startTestApi, type TestApi } from '../../../test/support/api';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

const REPO = 'sdq-test/tiny-sd-onnx';
let hub: HubStandIn;
let redis: TestRedis;
let api: TestApi;

beforeAll(async () => {
  hub = await startHubStandIn({ repo: REPO, dir: 'models/tiny-sd' });
  redis = await startTestRedis();
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_admin_token' });
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
  await hub?.close();
});

const start = (body: unknown) => api.admin('/v1/admin/models', { method: 'POST', body: JSON.stringify(body) });
async function finished(id: string): Promise<PullObject> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const pull = (await (await api.admin(`/v1/admin/models/pulls/${id}`)).json()) as PullObject;
    if (pull.state !== 'running' || Date.now() > deadline) return pull;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('model pulls through the admin API', () => {
  it('runs a pull in the background: 202 with its id, then its state until the engine folder is there', async () => {
    const res = await start({ repo: REPO, name: 'admin-pulled' });
    expect(res.status).toBe(202);
    const pull = (await res.json()) as PullObject;
    expect(pull).toMatchObject({ state: 'running', repo: REPO, revision: 'main', engine: 'admin-pulled', error: null });
    expect(res.headers.get('location')).toBe(`/v1/admin/models/pulls/${pull.id}`);
    const done = await finished(pull.id);
    expect(done).toMatchObject({ state: 'succeeded', commit: hub.commit, error: null });
    expect(done.bytes_done).toBe(done.bytes_total);
    expect(done.bytes_total).toBeGreaterThan(1_000_000);
    expect(existsSync(join(api.config.modelsDir, 'admin-pulled', 'sdq-pull.json'))).toBe(true);
    // an engine of this API at once (not at its next look at MODELS_DIR, 10 s here)
    const key = (await api.account('pulls')).api_key;
    const listed = async () => ((await (await fetch(`${api.url}/v1/engines/list`, { headers: { authorization: `Bearer ${key}` } })).json()) as { id: string }[]).some((e) => e.id === 'admin-pulled');
    const deadline = Date.now() + 2000;
    while (!(await listed()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await listed()).toBe(true);
    // the token reached the Hub
    hub.faults.token = 'hf_admin_token';
    const again = await finished(((await (await start({ repo: REPO, name: 'admin-pulled-2' })).json()) as PullObject).id);
    delete hub.faults.token;
    expect(again.state).toBe('succeeded');
  });

  it('refuses bad input with a 400 naming the field, an engine id in use with a 409, an unknown pull with a 404', async () => {
    const before = hub.requests.length;
    for (const [body, field] of [
      [{ repo: 'not-a-repo' }, 'repo'],
      [{ repo: REPO, revision: '../x' }, 'revision'],
      [{ repo: REPO, subfolder: '../x' }, 'subfolder'],
      [{ repo: REPO, name: 'bad name' }, 'name'],
      // an unknown field is about the body as a whole (its message names the field)
      [{ repo: REPO, extra: 1 }, 'body'],
      [{}, 'repo'],
    ] as const) {
      const res = await start(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { field: string }).field).toBe(field);
    }
    expect(hub.requests.length).toBe(before);
    const taken = await start({ repo: REPO, name: 'gen-a' });
    expect([taken.status, ((await taken.json()) as { name: string }).name]).toEqual([409, 'conflict']);
    expect((await api.admin('/v1/admin/models/pulls/pull_00000000-0000-0000-0000-000000000000')).status).toBe(404);
    expect((await api.admin('/v1/admin/models/pulls/..%2F..')).status).toBe(404);
  });

  it('ends a pull the Hub refuses as failed, saying what to do', async () => {
    hub.faults.token = 'another-token';
    const pull = await finished(((await (await start({ repo: REPO, name: 'gated' })).json()) as PullObject).id);
    delete hub.faults.token;
    expect(pull.state).toBe('failed');
    expect(pull.error).toEqual({ code: 'unauthorized', message: expect.stringMatching(/gated or private .*set HF_TOKEN/) });
    expect(existsSync(join(api.config.modelsDir, 'gated'))).toBe(false);
  });
});
