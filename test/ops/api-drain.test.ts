/**
 * SIGTERM on the API (RunningServer.close, which main.ts calls on the signal): no new connections, open
 * event streams ended with a `shutdown` event, in-flight requests given API_SHUTDOWN_GRACE_MS, then cut,
 * and Redis closed.
 */
import { describe, expect, it } from 'vitest';
import { startTestApi } from '../support/api';
import { startTestRedis } from '../support/redis';

describe('the API stopping', () => {
  it('ends event streams with a shutdown event, gives in-flight requests the grace period, then refuses connections', async () => {
    const redis = await startTestRedis();
    const api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, SYNC_WAIT: '60', API_SHUTDOWN_GRACE_MS: '1500' });
    try {
      const { api_key } = await api.account('drain');
      const headers = { authorization: `Bearer ${api_key}`, 'content-type': 'application/json' };
      const body = JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 });
      // no worker serves gen-a here: the job stays queued
      const queued = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, { method: 'POST', body, headers: { ...headers, prefer: 'respond-async' } });
      const { id } = (await queued.json()) as { id: string };
      const stream = await fetch(`${api.url}/v1/jobs/${id}/events`, { headers });
      const reader = stream.body!.getReader();
      let text = '';
      while (!text.includes('event: queued')) text += new TextDecoder().decode((await reader.read()).value);
      // a sync request that would wait up to SYNC_WAIT for a job that never runs
      const waiting = fetch(`${api.url}/v1/generation/gen-a/text-to-image`, { method: 'POST', body, headers }).then(
        (r) => r.status,
        () => 'cut',
      );
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      const closing = api.close();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      expect(text).toMatch(/event: shutdown\ndata: \{"id":"[^"]+","reason":"the API is restarting; reconnect to follow the job"\}/);
      await closing;
      const took = Date.now() - started;
      // the sync request was given the grace period, then cut
      expect(took).toBeGreaterThanOrEqual(1400);
      expect(took).toBeLessThan(5000);
      expect(await waiting).toBe('cut');
      await expect(fetch(`${api.url}/healthz`)).rejects.toThrow();
    } finally {
      await api.close().catch(() => {});
      await redis.close();
    }
  });
});
