/**
 * Engines no live worker serves: a request is 503 engine_unavailable with nothing held (REQUIRE_WORKER,
 * the default), workers' claims come and go with them, and a job queued while nobody serves its engine
 * (REQUIRE_WORKER=false) fails with engine_unavailable after UNSERVED_JOB_TIMEOUT, its credits released.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerInfoKey, workersKey } from '@sdq/contracts';
import { ADMIN_TOKEN, authed, type Service, startService, startTestWorker, waitFor } from '../e2e/support';
import { startTestRedis, type TestRedis } from '../support/redis';
import { expectError } from '../security/support';

let redis: TestRedis;

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis?.close();
});

const t2i = (service: Service, key: string, engine: string) =>
  fetch(`${service.url}/v1/generation/${engine}/text-to-image`, {
    method: 'POST',
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10 }),
    headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }),
  });
const workersOf = async (service: Service, key: string) =>
  Object.fromEntries(
    ((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: { workers: number } }[]).map((e) => [e.id, e.capabilities.workers]),
  );
const balance = async (service: Service, key: string) => ((await (await fetch(`${service.url}/v1/user/balance`, { headers: authed(key) })).json()) as { credits: number }).credits;

describe('engines no live worker serves', () => {
  it('are 503 engine_unavailable with nothing held, until a worker serves them, and again once it stops', async () => {
    const service = await startService(redis, { env: { QUEUE_PREFIX: `${redis.prefix}p1` } });
    try {
      const key = await service.apiKey('presence');
      expect(await workersOf(service, key)).toMatchObject({ 'tiny-sd': 0, 'tiny-sdxl': 0 });
      const refused = await expectError(await t2i(service, key, 'tiny-sd'), 503, 'engine_unavailable');
      // the message names the real cause: here no worker at all
      expect(refused.message).toMatch(/^engine tiny-sd: no live worker serves it: no worker is running for this deployment/);
      expect(await balance(service, key)).toBe(10);
      // A dry run still prices it.
      expect((await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image?dry_run=true`, { method: 'POST', body: JSON.stringify({ text_prompts: [{ text: 'a' }] }), headers: authed(key, { 'content-type': 'application/json' }) })).status).toBe(200);

      const worker = await startTestWorker({ env: { ...service.env, QUEUE_PREFIX: `${redis.prefix}p1` } }, { ENGINES: 'tiny-sd' });
      try {
        expect(await workersOf(service, key)).toMatchObject({ 'tiny-sd': 1, 'tiny-sdxl': 0 });
        expect((await t2i(service, key, 'tiny-sd')).status).toBe(202);
        const other = await expectError(await t2i(service, key, 'tiny-sdxl'), 503, 'engine_unavailable');
        // a worker runs, but serves another engine
        expect(other.message).toMatch(/^engine tiny-sdxl: no live worker serves it: 1 live worker serves tiny-sd, not tiny-sdxl \(it is not in their ENGINES, or it was added a moment ago/);
      } finally {
        await worker.close(5000);
      }
      await new Promise((r) => setTimeout(r, 1100));
      // A worker that stops withdraws its claim at once (one that dies stops counting within PRESENCE_TTL_MS, 15 s).
      expect(await workersOf(service, key)).toMatchObject({ 'tiny-sd': 0 });
      await expectError(await t2i(service, key, 'tiny-sd'), 503, 'engine_unavailable');
    } finally {
      await service.close();
    }
  }, 60_000);

  it('with REQUIRE_WORKER=false a job waits for a worker, and fails with engine_unavailable (credits back) after UNSERVED_JOB_TIMEOUT', async () => {
    const service = await startService(redis, { env: { QUEUE_PREFIX: `${redis.prefix}p2`, REQUIRE_WORKER: 'false', UNSERVED_JOB_TIMEOUT: '1', SWEEP_INTERVAL: '1' } });
    try {
      const key = await service.apiKey('waiting');
      const res = await t2i(service, key, 'tiny-sdxl');
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      expect(await balance(service, key)).toBeLessThan(10);
      const failed = await waitFor(async () => {
        const job = (await (await fetch(`${service.url}/v1/jobs/${id}`, { headers: authed(key) })).json()) as { status: string; error: { name: string; message: string } | null; credits_charged: number | null };
        return job.status === 'failed' ? job : undefined;
      }, 'the unserved job to fail', 15_000);
      expect(failed.error).toEqual({ name: 'engine_unavailable', message: expect.stringMatching(/no live worker served engine tiny-sdxl while the job waited/) });
      expect(failed.credits_charged).toBe(0);
      expect(await balance(service, key)).toBe(10);
      const ledger = (await (await fetch(`${service.url}/v1/user/ledger`, { headers: authed(key) })).json()) as { data: { type: string; reason: string | null }[] };
      expect(ledger.data[0]).toMatchObject({ type: 'release', reason: 'engine_unavailable' });
    } finally {
      await service.close();
    }
  }, 60_000);

  it("an engine a worker is loading is 'loading' and takes requests; one it could not load is 'failed', its reason for admins", async () => {
    const prefix = `${redis.prefix}p3`;
    const service = await startService(redis, { env: { QUEUE_PREFIX: prefix } });
    const client = service.server.deps.store.redis;
    try {
      const key = await service.apiKey('states');
      const stateOf = async (engine: string) =>
        ((await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json()) as { id: string; capabilities: { state: string; workers: number } }[]).find((e) => e.id === engine)!.capabilities;
      expect(await stateOf('tiny-sdxl')).toEqual({ ...(await stateOf('tiny-sdxl')), state: 'unserved', workers: 0, loaded_workers: 0 });
      // a worker's report, as apps/worker/src/presence.ts writes it: loading tiny-sdxl, tiny-sd3 failed
      const [seconds] = await client.time();
      const report = async (states: Record<string, unknown>) => {
        await client.zadd(workersKey(prefix), Number(seconds) * 1000 + 60_000, 'w1');
        await client.hset(workerInfoKey(prefix, 'w1'), { host: 'h', pid: '1', engines: '[]', providers: '{}', current_jobs: '[]', jobs_done: '0', started_at: '0', last_heartbeat: String(Number(seconds) * 1000), engine_states: JSON.stringify(states) });
      };
      await report({ 'tiny-sdxl': { state: 'loading' }, 'tiny-sd3': { state: 'failed', reason: 'model file missing: unet/model.onnx' } });
      expect((await stateOf('tiny-sdxl')).state).toBe('loading');
      expect((await t2i(service, key, 'tiny-sdxl')).status).toBe(202);
      expect((await stateOf('tiny-sd3')).state).toBe('failed');
      const refused = await expectError(await t2i(service, key, 'tiny-sd3'), 503, 'engine_unavailable');
      expect(refused.message).toMatch(/its folder failed to load on every live worker \(1 live worker\); an admin finds why on GET \/v1\/admin\/workers/);
      expect(refused.message).not.toContain('model file missing');
      // the reason is an admin's to read
      const workers = (await (await fetch(`${service.url}/v1/admin/workers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { data: { id: string; engine_states: Record<string, { state: string; reason?: string }> }[] };
      expect(workers.data.find((w) => w.id === 'w1')?.engine_states['tiny-sd3']).toEqual({ state: 'failed', reason: 'model file missing: unet/model.onnx' });
      expect(JSON.stringify(await (await fetch(`${service.url}/v1/engines/list`, { headers: authed(key) })).json())).not.toContain('model file missing');
    } finally {
      await service.close();
    }
  });
});

