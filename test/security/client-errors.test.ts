/**
 * Client mistakes that once answered 500 `internal_error`: each is now the catalogue's 4xx, and none is
 * logged as a server fault.
 */
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, ADMIN_TOKEN } from '../support/api';
import { startTestRedis, type TestRedis } from '../support/redis';
import { FUZZ_ROUTES } from './routes';
import { expectError, multipartBody, png, rawError, rawRequest } from './support';

let redis: TestRedis;
let api: TestApi;
let alice: { id: string; api_key: string };
const logs: { level: number; msg: string }[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  api = await startTestApi({ REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix }, { logger: pino({ level: 'info' }, sink) });
  alice = await api.account('alice');
});
afterAll(async () => {
  await api?.close();
  await redis?.close();
});
// Whatever a test sent, the server saw no fault of its own.
afterEach(() => {
  const faults = logs.filter((l) => l.level >= 50 || l.msg === 'unhandled error');
  logs.length = 0;
  expect(faults, JSON.stringify(faults)).toEqual([]);
});

const auth = () => ({ authorization: `Bearer ${alice.api_key}` });
const T2I = '/v1/generation/gen-a/text-to-image';
const BODY = JSON.stringify({ text_prompts: [{ text: 'a red circle' }], steps: 10 });

describe('charsets and encodings', () => {
  // Every JSON route, from the fuzz suite's list of routes.
  const ids = { engine: 'gen-a', upscaler: 'up-x2', job: 'job_x', account: 'acct_x', key: 'key_x', artifact: 'x' };
  it.each(FUZZ_ROUTES.filter((r) => r.json).map((r) => [r.method, r.path.replace(/\{(\w+)\}/g, (_, n: string) => r.params!(ids)[n]), r.caller] as const))('%s %s: a charset other than UTF-8 is 415', async (method, path, caller) => {
    const headers = caller === 'admin' ? { authorization: `Bearer ${ADMIN_TOKEN}` } : auth();
    for (const charset of ['latin1', 'foo', 'utf-16']) {
      const res = await fetch(api.url + path, { method, body: BODY, headers: { ...headers, 'content-type': `application/json; charset=${charset}` } });
      await expectError(res, 415, 'unsupported_media_type');
    }
    // UTF-8 spelled either way is fine.
    const ok = await fetch(api.url + `${T2I}?dry_run=true`, { method: 'POST', body: BODY, headers: { ...auth(), 'content-type': 'application/json; charset=UTF-8' } });
    expect(ok.status).toBe(200);
  });

  it('an unknown Content-Encoding is 415; a gzip or br body that does not inflate is 400; real gzip works', async () => {
    const send = (encoding: string, body: Buffer | string) =>
      fetch(api.url + `${T2I}?dry_run=true`, { method: 'POST', body, headers: { ...auth(), 'content-type': 'application/json', 'content-encoding': encoding } });
    await expectError(await send('foo', BODY), 415, 'unsupported_media_type');
    await expectError(await send('gzip', BODY), 400, 'bad_request');
    await expectError(await send('br', BODY), 400, 'bad_request');
    await expectError(await send('deflate', 'not deflated'), 400, 'bad_request');
    await expectError(await send('gzip', gzipSync(Buffer.alloc(2 * 1024 * 1024, 0x20))), 413, 'payload_too_large');
    expect((await send('gzip', gzipSync(BODY))).status).toBe(200);
  });

  it('a JSON body over the limit is 413', async () => {
    const res = await fetch(api.url + '/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'x'.repeat(100_000) }), headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' } });
    await expectError(res, 413, 'payload_too_large');
  });
});

describe('multipart', () => {
  const boundary = 'sdq-test-boundary';
  const head = (path: string, length: number, extra = '') =>
    `POST ${path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer ${alice.api_key}\nContent-Type: multipart/form-data; boundary=${boundary}\nContent-Length: ${length}\nConnection: close\n${extra}`;
  const I2I = '/v1/generation/gen-a/image-to-image';

  it('a part without Content-Disposition (or without a name) is 400, even among good parts', async () => {
    const image = await png(128, 128);
    const good = [
      { headers: ['Content-Disposition: form-data; name="text_prompts[0][text]"'], content: 'a red circle' },
      { headers: ['Content-Disposition: form-data; name="init_image"; filename="a.png"', 'Content-Type: image/png'], content: image },
    ];
    for (const stray of [{ headers: ['Content-Type: text/plain'], content: 'hello' }, { headers: ['Content-Disposition: form-data'], content: 'no name' }, { headers: ['Content-Disposition: attachment; name="x"'], content: 'x' }]) {
      const body = multipartBody(boundary, [good[0], stray, good[1]]);
      const res = await rawRequest(api.url, head(I2I, body.length), body);
      expect(rawError(res)).toEqual({ status: 400, name: 'bad_request' });
      expect(JSON.parse(res.body).message).toMatch(/1 part\(s\) without a form-data Content-Disposition|a part whose Content-Disposition names no field/);
    }
    // The same good parts alone are taken (a dry run).
    const body = multipartBody(boundary, good);
    expect(rawError(await rawRequest(api.url, head(`${I2I}?dry_run=true`, body.length), body)).status).toBe(200);
  });

  it('numbers in fields are decimal: hex, a leading + or Infinity are 400', async () => {
    const image = await png(128, 128);
    for (const steps of ['0x10', '+20', 'Infinity', '1_0', '20abc']) {
      const body = multipartBody(boundary, [
        { headers: ['Content-Disposition: form-data; name="text_prompts[0][text]"'], content: 'a red circle' },
        { headers: ['Content-Disposition: form-data; name="steps"'], content: steps },
        { headers: ['Content-Disposition: form-data; name="init_image"; filename="a.png"', 'Content-Type: image/png'], content: image },
      ]);
      expect(rawError(await rawRequest(api.url, head(`${I2I}?dry_run=true`, body.length), body)), steps).toEqual({ status: 400, name: 'bad_request' });
    }
  });

  it('a part header over the parser\'s limit is 400', async () => {
    const body = multipartBody(boundary, [{ headers: [`Content-Disposition: form-data; name="text_prompts[0][text]"`, `X-Pad: ${'a'.repeat(200_000)}`], content: 'hello' }]);
    expect(rawError(await rawRequest(api.url, head(I2I, body.length), body))).toEqual({ status: 400, name: 'bad_request' });
  });

  it('a body cut short, a missing boundary and a compressed body are 400 / 415', async () => {
    const image = await png(128, 128);
    const whole = multipartBody(boundary, [
      { headers: ['Content-Disposition: form-data; name="text_prompts[0][text]"'], content: 'a red circle' },
      { headers: ['Content-Disposition: form-data; name="init_image"; filename="a.png"', 'Content-Type: image/png'], content: image },
    ]);
    const cut = whole.subarray(0, whole.length - 100);
    // Content-Length says more is coming, then the client closes its side: nothing to answer, nothing left.
    const short = await rawRequest(api.url, head(I2I, cut.length).replace(/Content-Length: \d+/, `Content-Length: ${cut.length}`), cut);
    expect(rawError(short)).toEqual({ status: 400, name: 'bad_request' });
    const noBoundary = `POST ${I2I} HTTP/1.1\nHost: x\nAuthorization: Bearer ${alice.api_key}\nContent-Type: multipart/form-data\nContent-Length: ${whole.length}\nConnection: close\n`;
    expect(rawError(await rawRequest(api.url, noBoundary, whole))).toEqual({ status: 400, name: 'bad_request' });
    const gz = gzipSync(whole);
    expect(rawError(await rawRequest(api.url, head(I2I, gz.length, 'Content-Encoding: gzip\n'), gz))).toEqual({ status: 415, name: 'unsupported_media_type' });
  });

  it('a file field twice, an unknown file field, and too many parts are 400', async () => {
    const image = await png(128, 128);
    const file = (name: string) => ({ headers: [`Content-Disposition: form-data; name="${name}"; filename="a.png"`, 'Content-Type: image/png'], content: image });
    for (const parts of [
      [file('init_image'), file('init_image')],
      [file('avatar')],
      [file('init_image'), file('mask_image')],
      Array.from({ length: 220 }, (_, i) => ({ headers: [`Content-Disposition: form-data; name="f${i}"`], content: 'x' })),
    ]) {
      const body = multipartBody(boundary, parts);
      expect(rawError(await rawRequest(api.url, head(I2I, body.length), body))).toEqual({ status: 400, name: 'bad_request' });
    }
  });
});

describe('path parameters that do not decode', () => {
  it.each([
    ['GET', '/v1/jobs/%FF%FE', 'key'],
    ['POST', '/v1/jobs/%ZZ/cancel', 'key'],
    ['GET', '/v1/jobs/%E0%A4%A/events', 'key'],
    ['GET', '/v1/admin/accounts/%FF', 'admin'],
    ['DELETE', '/v1/admin/keys/%C0', 'admin'],
    ['GET', '/v1/artifacts/%FF', 'none'],
    ['GET', '/v1/artifacts/generations/%FF/0.png?expires=1&signature=00', 'none'],
    ['POST', '/v1/generation/%FF/text-to-image', 'key'],
  ])('%s %s is 400', async (method, path, who) => {
    const headers: Record<string, string> = who === 'key' ? auth() : who === 'admin' ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {};
    await expectError(await fetch(api.url + path, { method, headers }), 400, 'bad_request');
  });
});

describe('deep bodies', () => {
  it('a body nested 100,000 deep, with an Idempotency-Key, is 400 (no stack overflow)', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    for (const body of [
      `{"text_prompts":[{"text":"a"}],"extras":{"x":${deep}}}`,
      `{"text_prompts":[{"text":"a"}],"extras":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`,
      deep,
    ]) {
      const res = await fetch(api.url + T2I, { method: 'POST', body, headers: { ...auth(), 'content-type': 'application/json', 'idempotency-key': `deep-${body.length}` } });
      const error = await expectError(res, 400, 'bad_request');
      expect(error.message).toMatch(/nests deeper than 32 levels/);
    }
    // 32 levels inside extras is still fine.
    const ok = await fetch(api.url + `${T2I}?dry_run=true`, {
      method: 'POST',
      body: `{"text_prompts":[{"text":"a"}],"extras":${'['.repeat(30)}${']'.repeat(30)}}`,
      headers: { ...auth(), 'content-type': 'application/json' },
    });
    expect(ok.status, await ok.clone().text()).toBe(400); // extras must be an object: a 400 from the schema, not the depth cap
    expect((await ok.json()).message).not.toMatch(/nests deeper/);
  });
});
