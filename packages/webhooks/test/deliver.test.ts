/**
 * Delivery against real HTTP receivers on loopback. Every URL here points at 127.0.0.0/8 or ::1, and the
 * only name resolved is `localhost` (from /etc/hosts) or one answered by a fake resolver with a loopback
 * address: no packet leaves the machine.
 */
import type { LookupAddress } from 'node:dns';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deliver } from '../src/deliver';
import { generateSecret, signatureHeaders, verify } from '../src/signing';
import { freePort } from '../../../test/support/redis';
import { startReceiver, type Receiver } from './support/receiver';

const body = JSON.stringify({ type: 'job.completed', created_at: '2024-01-01T00:00:00.000Z', data: { id: 'job_1' } });

describe('deliver', () => {
  let receiver: Receiver;
  let other: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
    other = await startReceiver(undefined, '127.0.0.2');
  });
  afterEach(() => {
    receiver.requests.length = 0;
    other.requests.length = 0;
    receiver.handler = (_req, res) => res.end('ok');
  });
  afterAll(async () => {
    await receiver.close();
    await other.close();
  });

  it('POSTs the signed body and reports a 2xx as success', async () => {
    const secret = generateSecret();
    receiver.handler = (_req, res) => {
      res.statusCode = 204;
      res.end();
    };
    const headers = signatureHeaders({ id: 'msg_ok', timestamp: Math.floor(Date.now() / 1000), body }, [secret]);
    const result = await deliver({ url: receiver.url('/hook?x=1'), body, headers, allowedHosts: '127.0.0.1' });
    expect(result).toMatchObject({ ok: true, status: 204, responseSnippet: '' });
    expect(result.error).toBeUndefined();
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    const [request] = receiver.requests;
    expect(request).toMatchObject({ method: 'POST', path: '/hook?x=1', body });
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['user-agent']).toMatch(/^sdq-webhooks\//);
    expect(verify(secret, request.body, request.headers)).toBe(true);
  });

  it('reports a 500 with its status and the start of the answer', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 500;
      res.end('database on fire');
    };
    const result = await deliver({ url: receiver.url(), body, headers: {}, allowedHosts: '127.0.0.1' });
    expect(result).toMatchObject({ ok: false, status: 500, error: 'http_error', responseSnippet: 'database on fire' });
  });

  it('reports 410 Gone as such', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 410;
      res.end();
    };
    expect(await deliver({ url: receiver.url(), body, headers: {}, allowedHosts: '127.0.0.1' })).toMatchObject({ ok: false, status: 410, error: 'http_error' });
  });

  it('gives up on a receiver that hangs past the timeout', async () => {
    receiver.handler = () => {}; // never answers
    const result = await deliver({ url: receiver.url(), body, headers: {}, allowedHosts: '127.0.0.1', timeoutMs: 200 });
    expect(result).toMatchObject({ ok: false, error: 'timeout' });
    expect(result.status).toBeUndefined();
    expect(result.durationMs).toBeGreaterThanOrEqual(190);
    expect(result.durationMs).toBeLessThan(2000);
  });

  it('reports a refused connection on a closed port', async () => {
    const port = await freePort();
    const result = await deliver({ url: `http://127.0.0.1:${port}/hook`, body, headers: {}, allowedHosts: '127.0.0.1' });
    expect(result).toMatchObject({ ok: false, error: 'connection_refused' });
  });

  it('does not follow a redirect: a failed attempt, the target never called, listed or not', async () => {
    receiver.handler = (_req, res) => {
      res.writeHead(302, { location: other.url() });
      res.end();
    };
    for (const allowedHosts of ['127.0.0.1', '127.0.0.1,127.0.0.2']) {
      const result = await deliver({ url: receiver.url(), body, headers: {}, allowedHosts });
      expect(result).toMatchObject({ ok: false, status: 302, error: 'redirect' });
    }
    expect(receiver.requests).toHaveLength(2);
    expect(other.requests).toHaveLength(0);
  });

  it('reads the answer only up to the limit', async () => {
    receiver.handler = (_req, res) => {
      res.statusCode = 200;
      // 8 MiB, streamed: the client must stop reading, not wait for it all.
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      const pump = () => {
        while (sent < 128) {
          sent++;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => {});
      pump();
    };
    const result = await deliver({ url: receiver.url(), body, headers: {}, allowedHosts: '127.0.0.1', maxResponseBytes: 100 });
    expect(result.ok).toBe(true);
    expect(result.responseSnippet).toBe('x'.repeat(100));
    const defaultLimit = await deliver({ url: receiver.url(), body, headers: {}, allowedHosts: '127.0.0.1' });
    expect(defaultLimit.responseSnippet).toHaveLength(4096);
  });

  it('refuses invalid URLs and other schemes without a request', async () => {
    expect(await deliver({ url: 'not a url', body, headers: {} })).toMatchObject({ ok: false, error: 'invalid_url' });
    expect(await deliver({ url: 'file:///etc/passwd', body, headers: {} })).toMatchObject({ ok: false, error: 'invalid_url' });
  });
});

describe('deliver: SSRF check at connection time', () => {
  let v4: Receiver;
  let v4b: Receiver;
  let v6: Receiver;
  beforeAll(async () => {
    v4 = await startReceiver();
    v4b = await startReceiver(undefined, '127.0.0.2');
    v6 = await startReceiver(undefined, '::1');
  });
  afterAll(async () => {
    await Promise.all([v4.close(), v4b.close(), v6.close()]);
  });

  const targets: { name: string; url: () => string; host: string; receiver: () => Receiver }[] = [
    { name: '127.0.0.2', url: () => v4b.url(), host: '127.0.0.2', receiver: () => v4b },
    { name: '[::1]', url: () => v6.url(), host: '::1', receiver: () => v6 },
    { name: '[::ffff:127.0.0.1]', url: () => v4.url('/hook', '[::ffff:127.0.0.1]'), host: '[::ffff:127.0.0.1]', receiver: () => v4 },
    { name: 'localhost', url: () => v4.url('/hook', 'localhost'), host: 'localhost', receiver: () => v4 },
  ];

  it.each(targets)('refuses $name when it is not listed, and never connects', async ({ url, receiver }) => {
    const before = receiver().requests.length;
    const result = await deliver({ url: url(), body, headers: {}, allowedHosts: 'hooks.example.com,10.0.0.1' });
    expect(result).toMatchObject({ ok: false, error: 'ssrf_refused' });
    expect(receiver().requests.length).toBe(before);
  });

  it.each(targets)('delivers to $name when it is listed', async ({ url, host, receiver }) => {
    const before = receiver().requests.length;
    const result = await deliver({ url: url(), body, headers: {}, allowedHosts: [host] });
    expect(result).toMatchObject({ ok: true, status: 200, responseSnippet: 'ok' });
    expect(receiver().requests.length).toBe(before + 1);
  });

  it('refuses a redirect towards loopback from an allowed receiver: the redirect is a failure, loopback unreached', async () => {
    v4.handler = (_req, res) => {
      res.writeHead(307, { location: v4b.url('/internal') });
      res.end();
    };
    const before = v4b.requests.length;
    for (const allowedHosts of ['127.0.0.1', '127.0.0.1,127.0.0.2']) {
      expect(await deliver({ url: v4.url(), body, headers: {}, allowedHosts })).toMatchObject({ ok: false, status: 307, error: 'redirect' });
    }
    expect(v4b.requests.length).toBe(before);
    v4.handler = (_req, res) => res.end('ok');
  });

  it('checks what the name resolves to when connecting (DNS rebinding), unless the name is listed', async () => {
    // The name looked public at submission; by delivery time it resolves to loopback.
    const rebound = async (): Promise<LookupAddress[]> => [{ address: '127.0.0.1', family: 4 }];
    const url = v4.url('/hook', 'hooks.example.com');
    const before = v4.requests.length;
    expect(await deliver({ url, body, headers: {}, resolveAll: rebound })).toMatchObject({ ok: false, error: 'ssrf_refused' });
    expect(v4.requests.length).toBe(before);
    expect(await deliver({ url, body, headers: {}, resolveAll: rebound, allowedHosts: 'hooks.example.com' })).toMatchObject({ ok: true });
    expect(v4.requests.at(-1)?.headers.host).toBe(`hooks.example.com:${v4.port}`);
  });
});
