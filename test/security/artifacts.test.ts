/**
 * Signed artifact URLs: exactly one canonical form is accepted, and the signature never reaches a log.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { expectError } from './support';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };
let alice: { id: string; api_key: string };
const lines: string[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix }, { logger: pino({ level: 'debug' }, sink) });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
  alice = await api.account('alice');
});
afterAll(async () => {
  await worker?.close();
  await api?.close();
  await redis?.close();
});

async function artifactUrl(): Promise<URL> {
  const res = await fetch(`${api.url}/v1/generation/gen-a/text-to-image`, {
    method: 'POST',
    body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 }),
    headers: { authorization: `Bearer ${alice.api_key}`, 'content-type': 'application/json', prefer: 'wait=10' },
  });
  const job = (await res.json()) as { status: string; artifacts: { url: string }[] };
  expect(job.status).toBe('succeeded');
  return new URL(job.artifacts[0].url);
}

describe('signed artifact URLs', () => {
  it('accepts the URL as signed and refuses every other spelling of the same signature and expiry', async () => {
    const url = await artifactUrl();
    expect((await fetch(url)).status).toBe(200);
    const expires = url.searchParams.get('expires')!;
    const signature = url.searchParams.get('signature')!;
    expect(expires).toMatch(/^[1-9]\d+$/);
    expect(signature).toMatch(/^[0-9a-f]{64}$/);
    const variants: [string, string][] = [
      ['upper-case signature', `expires=${expires}&signature=${signature.toUpperCase()}`],
      ['a trailing character', `expires=${expires}&signature=${signature}x`],
      ['a trailing non-hex pair (Buffer.from drops it)', `expires=${expires}&signature=${signature}zz`],
      ['half a signature', `expires=${expires}&signature=${signature.slice(0, 32)}`],
      ['expires in hex', `expires=0x${Number(expires).toString(16)}&signature=${signature}`],
      ['expires as +N.0', `expires=%2B${expires}.0&signature=${signature}`],
      ['expires as N.0', `expires=${expires}.0&signature=${signature}`],
      ['expires with a leading zero', `expires=0${expires}&signature=${signature}`],
      ['expires with a space', `expires=%20${expires}&signature=${signature}`],
      ['expires in exponent form', `expires=${Number(expires) / 1e9}e9&signature=${signature}`],
      ['expires twice', `expires=${expires}&expires=${expires}&signature=${signature}`],
      ['signature twice', `expires=${expires}&signature=${signature}&signature=${signature}`],
      ['no signature', `expires=${expires}`],
    ];
    for (const [name, query] of variants) {
      const res = await fetch(`${url.origin}${url.pathname}?${query}`);
      const body = await expectError(res, 403, 'permission_denied');
      expect(body.message, name).toMatch(/not validly signed|not signed/);
    }
  });

  it('never writes a signature to the log: the request line shows the path with the signature redacted', async () => {
    lines.length = 0;
    const url = await artifactUrl();
    expect((await fetch(url)).status).toBe(200);
    const signature = url.searchParams.get('signature')!;
    await new Promise((r) => setTimeout(r, 50));
    expect(lines.filter((l) => l.includes(signature))).toEqual([]);
    const requestLine = lines.map((l) => JSON.parse(l)).find((l) => l.req?.url?.startsWith(url.pathname));
    expect(requestLine?.req.url).toBe(`${url.pathname}?expires=${url.searchParams.get('expires')}&signature=[redacted]`);
  });
});
