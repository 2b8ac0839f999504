/**
 * What the hostile-input suites share: images (good, truncated, corrupt, lying headers), multipart
 * bodies built by hand (fetch cannot send a malformed one), a raw HTTP client over a socket, and the
 * checks that a refused request left nothing behind (no hold, no job, no ledger entry).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { expect } from 'vitest';
import { type ChildProcessHandle, spawnEntry, waitFor } from '../e2e/support';
import { makeModelsDir } from '../support/api';
import { freePort } from '../support/redis';

export async function png(width: number, height: number, opts: { alpha?: boolean; noise?: boolean } = {}): Promise<Buffer> {
  const channels = opts.alpha ? 4 : 3;
  const background = { r: 0, g: 0, b: 255, alpha: 1 };
  const create: sharp.Create = opts.noise
    ? { width, height, channels, background, noise: { type: 'gaussian', mean: 128, sigma: 40 } }
    : { width, height, channels, background };
  return sharp({ create }).png().toBuffer();
}

export async function jpeg(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).jpeg().toBuffer();
}

/** The first `fraction` of an image's bytes: a valid header over data that stops early. */
export function truncated(image: Buffer, fraction = 0.6): Buffer {
  return image.subarray(0, Math.floor(image.length * fraction));
}

/** The image with its data scrambled after the header (every 7th byte flipped). */
export function corrupt(image: Buffer, from = 200): Buffer {
  const out = Buffer.from(image);
  for (let i = from; i < out.length - 50; i += 7) out[i] ^= 0x5a;
  return out;
}

/**
 * A tiny valid-looking PNG whose IHDR claims width x height (a decompression bomb's shape): signature,
 * IHDR with a correct CRC, one small IDAT, IEND.
 */
export function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export function form(fields: Record<string, string> | [string, string][], files: Record<string, Buffer> = {}): FormData {
  const fd = new FormData();
  for (const [k, v] of Array.isArray(fields) ? fields : Object.entries(fields)) fd.append(k, v);
  for (const [k, v] of Object.entries(files)) fd.append(k, new Blob([new Uint8Array(v)], { type: 'image/png' }), `${k}.png`);
  return fd;
}

export async function expectError(res: Response, status: number, name: string): Promise<{ id: string; name: string; message: string }> {
  const text = await res.text();
  let body: { id: string; name: string; message: string };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`not a JSON error body (${res.status}): ${text.slice(0, 200)}`);
  }
  // each dialect's own shape: sdq's and Stability's {name}, OpenAI's {error: {code}}, A1111's {error: <name>},
  // Replicate's and fal's {code}
  const raw = body as unknown as { name?: string; code?: string; message?: string; detail?: string; error?: string | { code?: string; message?: string } };
  const given = raw.name ?? raw.code ?? (typeof raw.error === 'string' ? raw.error : raw.error?.code);
  expect({ status: res.status, name: given }, text).toEqual({ status, name });
  // the request id: in the body where the dialect has one, always in X-Request-Id
  expect(body.id ?? res.headers.get('x-request-id')).toEqual(expect.any(String));
  const message = raw.message ?? raw.detail ?? (typeof raw.error === 'object' ? raw.error.message : undefined);
  expect(message).toEqual(expect.any(String));
  return { id: body.id ?? res.headers.get('x-request-id')!, name: given!, message: message! };
}

export interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/**
 * Sends bytes as they are over a socket (a malformed multipart body, a header fetch would fix) and
 * reads the answer until the server closes the connection.
 */
export function rawRequest(url: string, head: string, body: Buffer | string = '', timeoutMs = 10_000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => {
      socket.write(head.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n\r\n'));
      socket.write(body);
    });
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {}); // a reset after the answer is fine; the answer is what counts
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      let payload = split >= 0 ? text.slice(split + 4) : '';
      if (/transfer-encoding: chunked/i.test(text.slice(0, split))) payload = dechunk(payload);
      resolve({ status, headers: split >= 0 ? text.slice(0, split) : text, body: payload });
    });
  });
}

function dechunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    if (eol < 0) return out;
    const size = parseInt(rest.slice(0, eol), 16);
    if (!size) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}

/** A raw answer's error name (JSON body), for expect(). */
export function rawError(res: RawResponse): { status: number; name?: string } {
  try {
    return { status: res.status, name: (JSON.parse(res.body) as { name?: string }).name };
  } catch {
    return { status: res.status, name: `(not JSON: ${res.body.slice(0, 80)})` };
  }
}

/** A multipart body from parts given as raw header lines and content. */
export function multipartBody(boundary: string, parts: { headers: string[]; content: Buffer | string }[], end = true): Buffer {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    pieces.push(Buffer.from(`--${boundary}\r\n${part.headers.map((h) => `${h}\r\n`).join('')}\r\n`, 'latin1'));
    pieces.push(Buffer.isBuffer(part.content) ? part.content : Buffer.from(part.content, 'latin1'));
    pieces.push(Buffer.from('\r\n'));
  }
  if (end) pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

/** The API process's resident memory, MiB, from the kernel's own count. */
export function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return kb / 1024;
}

/** Starts a multipart upload of a `declared`-byte file, sends `sent` bytes of it, and stalls. */
export function stalledUpload(url: string, key: string, declared: number, sent: number): Promise<Socket> {
  const { port } = new URL(url);
  const boundary = 'stall-boundary';
  const preamble = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="text_prompts[0][text]"\r\n\r\na red circle\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="init_image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`,
  );
  const head =
    `POST /v1/generation/gen-a/image-to-image HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
    `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${preamble.length + declared + 64}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(head);
      socket.write(preamble);
      // Written whole; 'drain'-free: the kernel and the server take it at their pace.
      socket.write(Buffer.alloc(sent, 0x61), () => resolve(socket));
    });
    socket.on('error', reject);
  });
}


export const SPAWNED_ADMIN_TOKEN = 'spawned-admin-token-0123456789';

/** An API process (`npm run start:api`'s entry) on a free loopback port, with fake engines and local storage. */
export interface ApiProcess {
  handle: ChildProcessHandle;
  url: string;
  pid: number;
  artifacts: string;
  /** Creates an account (10 credits unless said) and returns its API key. */
  account(name: string, credits?: number): Promise<string>;
  close(): Promise<void>;
}

export async function spawnApi(redis: { url: string; prefix: string }, env: Record<string, string> = {}): Promise<ApiProcess> {
  const models = makeModelsDir();
  const artifacts = mkdtempSync(join(tmpdir(), 'sdq-spawned-artifacts-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const handle = spawnEntry(
    'apps/api/src/main.ts',
    {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: redis.prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: url,
      ADMIN_TOKEN: SPAWNED_ADMIN_TOKEN,
      MODELS_DIR: models,
      ARTIFACTS_DIR: artifacts,
      LOG_LEVEL: 'warn',
      REQUIRE_WORKER: 'false',
      ...env,
    },
    'sdq api listening',
  );
  // A quiet log level hides the ready line: the port answering is the sign.
  handle.ready.catch(() => {});
  await waitFor(() => fetch(`${url}/healthz`).then((r) => r.ok, () => false), 'the API to listen', 30_000);
  return {
    handle,
    url,
    pid: handle.child.pid!,
    artifacts,
    account: async (name, credits = 10) => {
      const res = await fetch(`${url}/v1/admin/accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${SPAWNED_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, credits }),
      });
      if (res.status !== 201) throw new Error(`account creation failed: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { api_key: string }).api_key;
    },
    close: async () => {
      await handle.kill('SIGTERM');
      rmSync(models, { recursive: true, force: true });
      rmSync(artifacts, { recursive: true, force: true });
    },
  };
}
