/**
 * Prototype pollution: every shape that once reached Object.prototype (multipart field names, JSON keys,
 * `extras`, query strings, webhook filters, admin and webhook bodies) is a 400, and afterwards another
 * account's request is priced, run and called back exactly as before.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNameForEngine } from '@sdq/contracts';
import { redisOptionsFromUrl } from '../../apps/api/src/config';
import { startStubWorker } from '../../apps/api/test/support/stub-worker';
import { startTestApi, type TestApi } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { expectError, form, png } from './support';

let redis: TestRedis;
let api: TestApi;
let worker: { close(): Promise<void> };
let queue: Queue;
let mallory: { id: string; api_key: string };
let bob: { id: string; api_key: string };
const ATTACKER = 'http://127.0.0.1:9/stolen';

beforeAll(async () => {
  redis = await startTestRedis();
  // Loopback webhooks allowed: a polluted default would be accepted and delivered, so only the fix stops it.
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  worker = await startStubWorker({ redisUrl: redis.url, prefix: redis.prefix, engine: 'gen-a', storage: api.server.deps.storage });
  queue = new Queue(queueNameForEngine('gen-a'), { connection: redisOptionsFromUrl(redis.url), prefix: redis.prefix });
  mallory = await api.account('mallory');
  bob = await api.account('bob');
});
afterAll(async () => {
  await queue?.close();
  await worker?.close();
  await api?.close();
  await redis?.close();
});

const call = (key: string, path: string, init: RequestInit = {}) =>
  fetch(api.url + path, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers as Record<string, string>) } });
const postJson = (key: string, path: string, body: string) => call(key, path, { method: 'POST', body, headers: { 'content-type': 'application/json', prefer: 'respond-async' } });
const T2I = '/v1/generation/gen-a/text-to-image';
const I2I = '/v1/generation/gen-a/image-to-image';

/** What bob's plain request costs and runs as: taken before and after the attack, and compared. */
async function bobsRequest(): Promise<{ price: number; steps: number; cfgScale: number; webhook: string | undefined; events: string | undefined }> {
  const dry = await postJson(bob.api_key, `${T2I}?dry_run=true`, JSON.stringify({ text_prompts: [{ text: 'a red circle' }] }));
  expect(dry.status).toBe(200);
  const { credits } = (await dry.json()) as { credits: number };
  const res = await postJson(bob.api_key, T2I, JSON.stringify({ text_prompts: [{ text: 'a red circle' }] }));
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const job = await queue.getJob(id);
  const record = await api.server.deps.store.getJob(id);
  return { price: credits, steps: job!.data.params.steps, cfgScale: job!.data.params.cfgScale, webhook: record!.webhook, events: record!.webhook_events };
}

describe('prototype pollution', () => {
  it('refuses every polluting shape with 400 and leaves other accounts untouched', async () => {
    const before = await bobsRequest();
    const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
    const image = await png(128, 128);
    const prompt: [string, string][] = [['text_prompts[0][text]', 'a red circle']];

    const multipartShapes: [string, string][] = [
      ['__proto__[steps]', '50'],
      ['__proto__[webhook]', ATTACKER],
      ['__proto__[cfg_scale]', '30'],
      ['__proto__', 'x'],
      ['constructor[prototype][steps]', '50'],
      ['prototype[steps]', '50'],
      ['text_prompts[0][__proto__][weight]', '-1'],
      ['text_prompts[__proto__][steps]', '50'],
      ['webhook_events_filter[__proto__]', 'start'],
      ['extras', '{"__proto__":{"steps":50}}'],
      ['extras', '{"a":{"constructor":{"prototype":{"webhook":"x"}}}}'],
    ];
    for (const [name, value] of multipartShapes) {
      const res = await call(mallory.api_key, I2I, { method: 'POST', body: form([...prompt, [name, value]], { init_image: image }) });
      const body = await expectError(res, 400, 'bad_request');
      expect(body.message, name).toMatch(/"(__proto__|constructor|prototype)" is not allowed/);
    }

    const jsonShapes = [
      '{"text_prompts":[{"text":"a"}],"__proto__":{"steps":50,"webhook":"' + ATTACKER + '"}}',
      '{"text_prompts":[{"text":"a"}],"extras":{"__proto__":{"steps":50}}}',
      '{"text_prompts":[{"text":"a","constructor":{"prototype":{"steps":50}}}]}',
      '{"text_prompts":[{"text":"a"}],"extras":{"deep":[{"prototype":1}]}}',
    ];
    for (const body of jsonShapes) await expectError(await postJson(mallory.api_key, T2I, body), 400, 'bad_request');
    await expectError(
      await call(mallory.api_key, '/v1/user/webhook', { method: 'PUT', body: `{"url":"${ATTACKER}","__proto__":{"enabled":true}}`, headers: { 'content-type': 'application/json' } }),
      400,
      'bad_request',
    );
    await expectError(await api.admin('/v1/admin/accounts', { method: 'POST', body: '{"name":"eve","__proto__":{"credits":1000000}}' }), 400, 'bad_request');

    for (const query of ['__proto__[limit]=1', '__proto__=1', 'constructor[prototype][x]=1', 'cursor=1&prototype=2']) {
      await expectError(await call(mallory.api_key, `/v1/jobs?${query}`), 400, 'bad_request');
    }
    await expectError(await postJson(mallory.api_key, `${T2I}?dry_run=true&__proto__[steps]=50`, '{"text_prompts":[{"text":"a"}]}'), 400, 'bad_request');

    // Nothing reached the prototype of every object in this process (the API runs in it).
    const empty = {} as Record<string, unknown>;
    expect(empty.steps).toBeUndefined();
    expect(empty.webhook).toBeUndefined();
    expect(empty.cfg_scale).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);

    // Bob's request without steps, cfg_scale or webhook: the same price, parameters and (no) webhook.
    const after = await bobsRequest();
    expect(after).toEqual(before);
    expect(after).toMatchObject({ steps: 30, cfgScale: 7, webhook: undefined, events: undefined });
    // Mallory was charged nothing for the refused requests.
    expect(await (await call(mallory.api_key, '/v1/user/balance')).json()).toEqual({ credits: 10 });
  });

  it('still reads Stability\'s bracketed multipart names into values of their own', async () => {
    const res = await call(bob.api_key, `${I2I}?dry_run=true`, {
      method: 'POST',
      body: form(
        [
          ['text_prompts[0][text]', 'a red circle'],
          ['text_prompts[0][weight]', '1'],
          ['text_prompts[1][text]', 'blurry'],
          ['text_prompts[1][weight]', '-1'],
          ['samples', '2'],
          ['webhook_events_filter[]', 'start'],
          ['webhook_events_filter[]', 'completed'],
        ],
        { init_image: await png(128, 128) },
      ),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ dry_run: true, kind: 'image-to-image', samples: 2 });
  });
});
