/**
 * One delivery attempt: a POST with node:http/https, the SSRF check where the connection is made, no
 * redirects followed, the whole attempt bounded by a timeout and the response body read only up to a
 * small limit. It never throws and never logs: the caller gets a result to record and to decide on.
 */
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { type AllowListInput, checkLiteralHost, guardedLookup, parseAllowList, type ResolveAll, systemResolveAll } from './ssrf';

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 4096;
const USER_AGENT = 'sdq-webhooks/0.1';

export type DeliveryErrorCode =
  /** No complete answer within the timeout (connecting, sending, or waiting for the status). */
  | 'timeout'
  | 'connection_refused'
  | 'connection_reset'
  | 'dns_failed'
  | 'unreachable'
  | 'tls_error'
  /** The host or an address it resolved to is in a refused range: final, never retried. */
  | 'ssrf_refused'
  | 'invalid_url'
  /** A 3xx: redirects are not followed, so the attempt failed. */
  | 'redirect'
  /** Any other non-2xx status. */
  | 'http_error'
  | 'network_error';

export interface DeliveryResult {
  /** True for a 2xx answer within the timeout. */
  ok: boolean;
  status?: number;
  error?: DeliveryErrorCode;
  durationMs: number;
  /** The start of the response body as text, at most maxResponseBytes bytes; '' when none. */
  responseSnippet: string;
}

export interface DeliverOptions {
  url: string;
  /** The exact body that was signed. */
  body: string | Buffer;
  /** Signature headers and any others; content-type and user-agent are set unless given. */
  headers: Record<string, string>;
  /** Bound on the whole attempt, connection included; default 10 000. */
  timeoutMs?: number;
  /** Bytes of the response body read at most; default 4096. */
  maxResponseBytes?: number;
  /** WEBHOOK_ALLOWED_HOSTS: names and IPs exempt from the SSRF check; default none. */
  allowedHosts?: AllowListInput;
  /** Name resolution; default the system resolver (tests inject one to simulate DNS rebinding). */
  resolveAll?: ResolveAll;
}

export function deliver(opts: DeliverOptions): Promise<DeliveryResult> {
  const { body, timeoutMs = DEFAULT_TIMEOUT_MS, maxResponseBytes = DEFAULT_MAX_RESPONSE_BYTES, resolveAll = systemResolveAll } = opts;
  const allow = parseAllowList(opts.allowedHosts);
  const started = performance.now();

  return new Promise((resolve) => {
    let settled = false;
    let request: http.ClientRequest | undefined;
    let timer: NodeJS.Timeout | undefined;
    let status: number | undefined;
    const chunks: Buffer[] = [];
    let received = 0;

    const finish = (result: Omit<DeliveryResult, 'durationMs' | 'responseSnippet'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request?.destroy();
      const responseSnippet = Buffer.concat(chunks).subarray(0, maxResponseBytes).toString('utf8');
      resolve({ ...result, durationMs: Math.round(performance.now() - started), responseSnippet });
    };
    const finishWithStatus = () => finish(resultForStatus(status ?? 0));

    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      return finish({ ok: false, error: 'invalid_url' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return finish({ ok: false, error: 'invalid_url' });
    try {
      // node connects to an IP literal without calling `lookup`, so literals are checked here.
      checkLiteralHost(url.hostname, allow);
    } catch {
      return finish({ ok: false, error: 'ssrf_refused' });
    }

    timer = setTimeout(() => (status === undefined ? finish({ ok: false, error: 'timeout' }) : finishWithStatus()), timeoutMs);
    const client = url.protocol === 'https:' ? https : http;
    request = client.request({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port || undefined,
      path: `${url.pathname}${url.search}`,
      headers: {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        ...opts.headers,
        'content-length': String(Buffer.byteLength(body)),
      },
      // A fresh socket per attempt: a pooled one would skip the lookup, and with it the check.
      agent: false,
      lookup: guardedLookup(allow, resolveAll),
    });
    request.on('response', (response) => {
      status = response.statusCode ?? 0;
      response.on('data', (chunk: Buffer) => {
        if (received < maxResponseBytes) chunks.push(chunk);
        received += chunk.length;
        // Enough read: the rest is never downloaded.
        if (received >= maxResponseBytes) finishWithStatus();
      });
      response.on('end', finishWithStatus);
      response.on('error', finishWithStatus);
    });
    request.on('error', (err) => finish({ ok: false, error: classifyError(err) }));
    request.end(body);
  });
}

function resultForStatus(status: number): Omit<DeliveryResult, 'durationMs' | 'responseSnippet'> {
  if (status >= 200 && status < 300) return { ok: true, status };
  return { ok: false, status, error: status >= 300 && status < 400 ? 'redirect' : 'http_error' };
}

function classifyError(err: Error): DeliveryErrorCode {
  // With happy eyeballs (autoSelectFamily) node reports an AggregateError of the per-address attempts.
  const first = err instanceof AggregateError && err.errors.length ? (err.errors[0] as NodeJS.ErrnoException) : undefined;
  const code = (err as NodeJS.ErrnoException).code ?? first?.code ?? '';
  if (code === 'ERR_SSRF_REFUSED') return 'ssrf_refused';
  if (code === 'ECONNREFUSED') return 'connection_refused';
  if (code === 'ETIMEDOUT') return 'timeout';
  if (code === 'ECONNRESET' || code === 'EPIPE' || err.message === 'socket hang up') return 'connection_reset';
  if (code === 'ENOTFOUND' || code.startsWith('EAI_')) return 'dns_failed';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || code.includes('SELF_SIGNED')) return 'tls_error';
  return 'network_error';
}
