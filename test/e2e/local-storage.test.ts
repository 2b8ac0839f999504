/** End to end with local storage: the async job's artifact is served by the API from a signed URL. */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../support/redis';
import { authed, readEvents, type Service, startService, startTestWorker, type TestWorker, textToImageBody } from './support';

describe('the service with local storage', () => {
  let redis: TestRedis;
  let service: Service;
  let worker: TestWorker;

  beforeAll(async () => {
    redis = await startTestRedis();
    service = await startService(redis);
    worker = await startTestWorker(service);
  });
  afterAll(async () => {
    await worker?.close(1000);
    await service?.close();
    await redis?.close();
  });

  it('runs an async job with SSE progress to completion; the artifact downloads from its signed /v1/artifacts URL', async () => {
    const key = await service.apiKey();
    const res = await fetch(`${service.url}/v1/generation/tiny-sd/text-to-image`, {
      method: 'POST',
      headers: authed(key, { 'content-type': 'application/json', prefer: 'respond-async', accept: 'image/webp' }),
      body: textToImageBody({ steps: 10 }),
    });
    expect(res.status).toBe(202);
    const job = (await res.json()) as { id: string; urls: { events: string } };
    const events = await readEvents(job.urls.events, key);
    expect(events.some((e) => e.event === 'progress')).toBe(true);
    const done = events[events.length - 1];
    expect(done.event).toBe('completed');
    expect(done.data).toMatchObject({ status: 'succeeded', progress: { step: 10, steps: 10 } });
    const { url, content_type } = done.data.artifacts[0];
    expect(url).toMatch(new RegExp(`^${service.url}/v1/artifacts/generations/${job.id}/0\\.webp\\?expires=\\d+&signature=[0-9a-f]+$`));
    expect(content_type).toBe('image/webp');

    // No API key needed: the signature is the credential.
    const image = await fetch(url);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/webp');
    const meta = await sharp(Buffer.from(await image.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 128, 128]);
    // A tampered signature is refused.
    const tampered = url.slice(0, -1) + (url.endsWith('0') ? '1' : '0');
    expect((await fetch(tampered)).status).toBe(403);
  });
});
