/**
 * /metrics, scraped as Prometheus scrapes it, after real jobs: the API's requests by route template and
 * status, jobs by engine queue and state, the oldest waiting job's age and credits reserved; the worker's
 * job durations, queue waits, seconds per step and credits settled on its health port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { accountWith, authed, type Service, startService, startTestWorker, type TestWorker, textToImageBody, waitFor } from '../e2e/support';

let redis: TestRedis;
let service: Service;
let worker: TestWorker;
let key: string;

beforeAll(async () => {
  redis = await startTestRedis();
  // tiny-sdxl has no worker here, so a job for it waits (REQUIRE_WORKER=false queues it)
  service = await startService(redis, { env: { REQUIRE_WORKER: 'false' } });
  worker = await startTestWorker(service, { ENGINES: 'tiny-sd' });
  key = await accountWith(service, 'metrics', 100);
}, 60_000);
afterAll(async () => {
  await worker?.close(1000);
  await service?.close();
  await redis?.close();
});

/** The value of one sample line: `name{labels} value`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    // label values may hold braces themselves (route templates), so the label set runs to the last one
    const m = /^(\w+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}

describe('/metrics', () => {
  it('the API counts requests by route template and status, jobs by queue state, credits reserved, the oldest waiting job', async () => {
    const ok = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, { method: 'POST', body: textToImageBody(), headers: authed(key, { 'content-type': 'application/json', accept: 'image/png' }) });
    expect(ok.status).toBe(200);
    const waiting = await fetch(`${service.url}/v1/generation/tiny-sdxl/text-to-image`, { method: 'POST', body: textToImageBody(), headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async' }) });
    expect(waiting.status).toBe(202);
    expect((await fetch(`${service.url}/v1/jobs/nope`, { headers: authed(key) })).status).toBe(404);
    await new Promise((r) => setTimeout(r, 1100));
    const res = await fetch(`${service.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(sample(text, 'sdq_http_requests_total', { route: '/v1/generation/{engine_id}/text-to-image', method: 'POST', status: '200' })).toBe(1);
    expect(sample(text, 'sdq_http_requests_total', { route: '/v1/generation/{engine_id}/text-to-image', method: 'POST', status: '202' })).toBe(1);
    // the route template, never the id: one series for every job id
    expect(sample(text, 'sdq_http_requests_total', { route: '/v1/jobs/{id}', method: 'GET', status: '404' })).toBe(1);
    expect(text).not.toContain('/v1/jobs/nope');
    expect(sample(text, 'sdq_queue_jobs', { engine: 'tiny-sd', state: 'completed' })).toBe(1);
    expect(sample(text, 'sdq_queue_jobs', { engine: 'tiny-sdxl', state: 'prioritized' })).toBe(1);
    expect(sample(text, 'sdq_queue_oldest_waiting_seconds', { engine: 'tiny-sdxl' })).toBeGreaterThan(1);
    expect(sample(text, 'sdq_queue_oldest_waiting_seconds', { engine: 'tiny-sd' })).toBe(0);
    expect(sample(text, 'sdq_credits_reserved_total')).toBeGreaterThan(0);
    expect(sample(text, 'sdq_api_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it("the worker's health port has job durations, queue waits, seconds per step and credits settled", async () => {
    const text = await waitFor(async () => {
      const t = await (await fetch(`http://127.0.0.1:${worker.healthPort}/metrics`)).text();
      return (sample(t, 'sdq_credits_settled_total') ?? 0) > 0 ? t : undefined;
    }, 'the settlement to be counted');
    expect(sample(text, 'sdq_job_duration_seconds_count', { engine: 'tiny-sd', kind: 'text-to-image', outcome: 'succeeded' })).toBe(1);
    expect(sample(text, 'sdq_job_queue_wait_seconds_count', { engine: 'tiny-sd' })).toBe(1);
    // 10 steps of the one job, each a model call
    expect(sample(text, 'sdq_denoising_step_seconds_count', { engine: 'tiny-sd' })).toBe(10);
    expect(sample(text, 'sdq_worker_jobs_total', { engine: 'tiny-sd', outcome: 'succeeded' })).toBe(1);
  });
});
