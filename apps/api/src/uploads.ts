/**
 * Multipart bodies, read with busboy and never held in memory: each file streams to a temporary file
 * (hashed on the way, for Idempotency-Key fingerprints), fields land in a Map, and everything is removed
 * when the response ends or the client goes away. A body that stalls is cut off; a key has a bounded
 * number of uploads in flight. Stability's bracketed field names then become nested values in objects
 * without a prototype, and every uploaded image is decoded in full before anything is held or stored.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Request, RequestHandler } from 'express';
import busboy from 'busboy';
import sharp from 'sharp';
import { bareObject, describeTreeProblem, FORBIDDEN_KEYS, findTreeProblem, NUMERIC_FORM_FIELDS, ServiceError, treeProblemField } from '@sdq/contracts';

// image[]: OpenAI's SDK names an array of images so (gpt-image-1 edits)
export const IMAGE_FIELDS = ['init_image', 'mask_image', 'image', 'image[]', 'mask'] as const;
export type ImageField = (typeof IMAGE_FIELDS)[number];

export interface UploadedFile {
  /** The temporary file holding the bytes; removed with the request. */
  path: string;
  size: number;
  sha256: string;
}

export interface MultipartBody {
  /** Every value of every field, in the order sent. */
  fields: Map<string, string[]>;
  files: Map<ImageField, UploadedFile>;
}

declare module 'express-serve-static-core' {
  interface Request {
    multipart?: MultipartBody;
  }
}

export interface MultipartOptions {
  /** The file fields this endpoint takes; any other file part is a 400. */
  files: readonly ImageField[];
  /** Largest file, bytes (MAX_UPLOAD_BYTES). */
  maxFileBytes: number;
  /** A body that sends nothing for this long is cut off with 408 (UPLOAD_IDLE_TIMEOUT_MS). */
  idleTimeoutMs: number;
  /** Multipart bodies one API key may be sending at once (MAX_UPLOADS_PER_KEY). */
  maxPerKey: number;
  /** Where the temporary files go. Default: the OS temp folder. */
  dir?: string;
}

const LIMITS = { files: 3, fields: 200, fieldSize: 64 * 1024, parts: 210, fieldNameSize: 200, headerPairs: 100 };

/** How much of a refused body is read and dropped so the client can read the answer (bytes, ms). */
const DRAIN_BYTES = 32 * 1024 * 1024;
const DRAIN_MS = 5000;

/**
 * Fails the request with `err` while its body may still be arriving. The rest of the body is read and
 * dropped, up to DRAIN_BYTES and DRAIN_MS (a client still writing would otherwise get a reset instead
 * of the answer, as it would if the answer closed the connection); past that, or from a client that
 * has stalled, the connection is closed.
 */
export function failMidBody(req: Request, next: (err: unknown) => void, err: ServiceError): void {
  const res = req.res!;
  if (err.code === 'request_timeout') res.set('Connection', 'close');
  res.once('finish', () => {
    if (req.complete) return;
    if (err.code === 'request_timeout') return void req.destroy();
    let drained = 0;
    const timer = setTimeout(() => req.destroy(), DRAIN_MS);
    timer.unref();
    req.on('data', (chunk: Buffer) => {
      drained += chunk.length;
      if (drained > DRAIN_BYTES) req.destroy();
    });
    req.once('close', () => clearTimeout(timer));
    req.resume();
  });
  next(err);
}

export function multipart(opts: MultipartOptions): RequestHandler {
  const inFlight = new Map<string, number>();
  const base = opts.dir ?? tmpdir();
  return (req, res, next) => {
    if (!req.is('multipart/form-data')) {
      return next(new ServiceError('invalid_mime_type', `body: this endpoint takes multipart/form-data (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' }));
    }
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity') {
      return failMidBody(req, next, new ServiceError('unsupported_media_type', `Content-Encoding: ${encoding} is not accepted on multipart bodies; send them uncompressed`));
    }
    const owner = req.keyId ?? req.accountId ?? '';
    const count = inFlight.get(owner) ?? 0;
    if (count >= opts.maxPerKey) {
      return failMidBody(
        req,
        next,
        new ServiceError('rate_limited', `this API key already has ${count} uploads in progress (MAX_UPLOADS_PER_KEY); retry when one finishes`, { headers: { 'Retry-After': '1' } }),
      );
    }
    inFlight.set(owner, count + 1);
    let dir: string | undefined;
    let settled = false;
    const writes: Promise<void>[] = [];
    // Each file's part stream and the temporary file it is piped into, while the copy runs.
    const streams = new Map<NodeJS.ReadableStream, NodeJS.WritableStream & { destroy(): void }>();
    const stopCopies = () => {
      for (const [source, out] of streams) {
        source.unpipe(out);
        source.resume();
        out.destroy();
      }
      streams.clear();
    };
    const body: MultipartBody = { fields: new Map(), files: new Map() };
    // File fields as they start (body.files has them only once written).
    const seen = new Set<string>();
    let parser: busboy.Busboy | undefined;
    let idle: NodeJS.Timeout | undefined;

    // The key's count is of bodies still arriving: it drops once this one is read, failed or abandoned.
    let counted = true;
    const uncount = () => {
      if (!counted) return;
      counted = false;
      const left = (inFlight.get(owner) ?? 1) - 1;
      if (left > 0) inFlight.set(owner, left);
      else inFlight.delete(owner);
    };
    // Runs once whatever happens: answered, failed, or the client gone.
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      // Answered, or the client is gone (nobody is left to answer): either way the body is done with.
      settled = true;
      parser?.destroy();
      clearTimeout(idle);
      uncount();
      stopCopies();
      if (dir) void rm(dir, { recursive: true, force: true });
    };
    res.once('close', release);

    const fail = (err: ServiceError) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      req.unpipe(parser);
      stopCopies();
      uncount();
      failMidBody(req, next, err);
    };
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(
        () => fail(new ServiceError('request_timeout', `body: nothing arrived for ${opts.idleTimeoutMs} ms; the upload was cut off`, { field: 'body' })),
        opts.idleTimeoutMs,
      );
    };
    try {
      parser = busboy({ headers: req.headers, limits: { ...LIMITS, fileSize: opts.maxFileBytes }, defParamCharset: 'utf8' });
    } catch (err) {
      release();
      return next(new ServiceError('bad_request', `body: malformed multipart form (${(err as Error).message})`, { field: 'body' }));
    }

    parser.on('field', (name, value, info) => {
      if (!name) return fail(new ServiceError('bad_request', 'body: a part whose Content-Disposition names no field', { field: 'body' }));
      if (info.nameTruncated || info.valueTruncated) return fail(new ServiceError('bad_request', `${name.slice(0, 64)}: field is longer than ${LIMITS.fieldSize} bytes`, { field: name.slice(0, 64) }));
      const values = body.fields.get(name);
      if (values) values.push(value);
      else body.fields.set(name, [value]);
    });
    parser.on('file', (name, stream, _info) => {
      // A part cut short errors on its own stream: handled here, whatever became of the request.
      stream.on('error', () => {});
      name = String(name ?? '');
      if (!(opts.files as readonly string[]).includes(name) || seen.has(name)) {
        stream.resume();
        return fail(new ServiceError('bad_request', `${name.slice(0, 64)}: is not a file field of this endpoint (or was sent twice)`, { field: name.slice(0, 64) }));
      }
      const field = name as ImageField;
      seen.add(field);
      const hash = createHash('sha256');
      let size = 0;
      const copy = (async () => {
          dir ??= await mkdtemp(join(base, 'sdq-upload-'));
          if (settled) return void stream.resume();
          const path = join(dir, field);
          const out = createWriteStream(path);
          streams.set(stream, out);
          await new Promise<void>((resolve, reject) => {
            stream.on('data', (chunk: Buffer) => {
              size += chunk.length;
              hash.update(chunk);
            });
            stream.on('limit', () => fail(new ServiceError('invalid_file_size', `${field}: is larger than the upload limit of ${opts.maxFileBytes} bytes (MAX_UPLOAD_BYTES)`, { field: field })));
            stream.on('error', reject);
            out.on('error', reject);
            out.on('close', resolve);
            stream.pipe(out);
          });
          if (!streams.delete(stream)) return; // stopped: the request failed or went away meanwhile
          body.files.set(field, { path, size, sha256: hash.digest('hex') });
        })();
      // Also handled here: a copy can fail after the form has failed for another reason.
      copy.catch((err: Error) => fail(new ServiceError('bad_request', `${field}: the upload could not be read (${err.message})`, { field: field })));
      writes.push(copy);
    });
    for (const [event, what] of [
      ['partsLimit', `more than ${LIMITS.parts} parts`],
      ['filesLimit', `more than ${LIMITS.files} files`],
      ['fieldsLimit', `more than ${LIMITS.fields} fields`],
    ] as const) {
      parser.on(event, () => fail(new ServiceError('bad_request', `body: ${what}`, { field: 'body' })));
    }
    parser.on('error', (err: Error) => fail(new ServiceError('bad_request', `body: malformed multipart form (${err.message})`, { field: 'body' })));
    parser.on('close', () => {
      if (settled) return;
      clearTimeout(idle);
      const parts = delimiters.count - 1; // the closing delimiter ends the last part
      let named = seen.size;
      for (const values of body.fields.values()) named += values.length;
      if (parts > named) return fail(new ServiceError('bad_request', `body: ${parts - named} part(s) without a form-data Content-Disposition naming the field`, { field: 'body' }));
      Promise.all(writes).then(
        () => {
          if (settled) return;
          settled = true;
          uncount();
          req.multipart = body;
          next();
        },
        (err: Error) => fail(new ServiceError('bad_request', `body: the upload could not be read (${err.message})`, { field: 'body' })),
      );
    });
    // busboy skips a part with no form-data Content-Disposition (or no name) without a word: count the
    // delimiters as they pass and compare, so such a part is a 400 rather than silently dropped.
    const delimiters = new DelimiterCounter(boundaryOf(req.headers['content-type']));
    req.on('data', (chunk: Buffer) => {
      touch();
      delimiters.push(chunk);
    });
    touch();
    req.pipe(parser);
  };
}

/** The boundary parameter of a multipart Content-Type ('' when absent: busboy refuses that first). */
export function boundaryOf(contentType: string | undefined): string {
  const match = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  return match?.[1] ?? match?.[2] ?? '';
}

/** Counts `CRLF--boundary` delimiters in a stream (the first may open the body without its CRLF). */
export class DelimiterCounter {
  count = 0;
  private readonly needle: Buffer;
  private tail: Buffer;

  constructor(boundary: string) {
    this.needle = Buffer.from(`\r\n--${boundary}`, 'latin1');
    // As if the body began with CRLF, so a delimiter at its very start counts too.
    this.tail = Buffer.from('\r\n');
  }

  push(chunk: Buffer): void {
    const n = this.needle.length;
    if (n <= 4) return;
    // A delimiter that starts in the kept tail ends in this chunk's first n - 1 bytes: only that seam is
    // copied, never the chunk itself (this runs on every chunk of every upload).
    this.countIn(Buffer.concat([this.tail, chunk.subarray(0, n - 1)]));
    this.countIn(chunk);
    // Keep what could be the start of a delimiter cut by the chunk's end (never a whole one: no double count).
    this.tail = chunk.length >= n - 1 ? chunk.subarray(chunk.length - (n - 1)) : Buffer.concat([this.tail, chunk]).subarray(-(n - 1));
  }

  private countIn(buffer: Buffer): void {
    for (let at = buffer.indexOf(this.needle); at >= 0; at = buffer.indexOf(this.needle, at + this.needle.length)) this.count++;
  }
}

/**
 * `text_prompts[0][text]=a` -> `{ text_prompts: [{ text: 'a' }] }`, in objects without a prototype;
 * numeric fields become numbers. The last value of a repeated field wins. `__proto__`, `constructor`
 * and `prototype` anywhere in a name are a 400.
 */
export function parseFormFields(fields: Map<string, string[]>): Record<string, unknown> {
  const out = bareObject();
  for (const [rawKey, values] of fields) {
    const value = values[values.length - 1];
    const path = rawKey.match(/[^[\]]+|\[\]/g) ?? [rawKey];
    if (path.length > 4) throw new ServiceError('bad_request', `${rawKey.slice(0, 64)}: nests deeper than 4 levels`, { field: rawKey.slice(0, 64) });
    const forbidden = path.find((part) => FORBIDDEN_KEYS.has(part));
    if (forbidden) throw new ServiceError('bad_request', `${rawKey.slice(0, 64)}: the key ${JSON.stringify(forbidden)} is not allowed`, { field: rawKey.slice(0, 64) });
    let node: Record<string, unknown> | unknown[] = out;
    for (let i = 0; i < path.length; i++) {
      const part = path[i];
      const key: string | number = /^\d+$/.test(part) ? Number(part) : part;
      if (typeof key === 'number' && key > 100) throw new ServiceError('bad_request', `${rawKey.slice(0, 64)}: index too large`, { field: rawKey.slice(0, 64) });
      if (typeof key === 'number' && !Array.isArray(node)) throw new ServiceError('bad_request', `${rawKey.slice(0, 64)}: an index where a name was expected`, { field: rawKey.slice(0, 64) });
      if (typeof key === 'string' && Array.isArray(node)) throw new ServiceError('bad_request', `${rawKey.slice(0, 64)}: a name where an index was expected`, { field: rawKey.slice(0, 64) });
      const slot = node as Record<string | number, unknown>;
      if (i === path.length - 1) {
        slot[key] = convert(part, value);
      } else {
        const nextIsIndex = /^\d+$/.test(path[i + 1]);
        const existing = slot[key];
        if (existing === null || typeof existing !== 'object' || Array.isArray(existing) !== nextIsIndex) slot[key] = nextIsIndex ? [] : bareObject();
        node = slot[key] as Record<string, unknown> | unknown[];
      }
    }
  }
  return out;
}

/** A number as JSON writes one: no hex, no `+`, no `Infinity`. Anything else stays text (and fails its schema). */
const DECIMAL = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

function convert(field: string, value: string): unknown {
  if (NUMERIC_FORM_FIELDS.has(field)) {
    const text = value.trim();
    if (text === '') return undefined;
    return DECIMAL.test(text) ? Number(text) : text;
  }
  // JSON in a form field: Stability's extras, sdq's loras (`[{"name":"x","weight":0.8}]`; loras[0][name] works too)
  if (field === 'extras' || (field === 'loras' && value.trimStart().startsWith('['))) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return value;
    }
    const problem = findTreeProblem(parsed);
    if (problem) {
      const inExtras = { ...problem, path: `${field}${problem.path === 'body' ? '' : `.${problem.path}`}` };
      throw new ServiceError('bad_request', describeTreeProblem(inExtras), { field: treeProblemField(inExtras) });
    }
    return parsed;
  }
  return value;
}

/** Every value of a repeated field, with or without brackets (`f=a&f=b`, `f[]=a`, `f[0]=a`), in order. */
export function repeatedField(fields: Map<string, string[]>, name: string): string[] | undefined {
  const pattern = new RegExp(`^${name}(\\[\\d*\\])?$`);
  const values = [...fields].filter(([key]) => pattern.test(key)).flatMap(([, v]) => v);
  return values.length ? values : undefined;
}

export interface CheckedImage {
  data: Buffer;
  width: number;
  height: number;
  hasAlpha: boolean;
  contentType: string;
}

/** The three formats sdq takes, known by their first bytes before any decoder sees them. */
function sniff(head: Buffer): 'image/png' | 'image/jpeg' | 'image/webp' | undefined {
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head.length >= 12 && head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') return 'image/webp';
  return undefined;
}

/** The catalogue name for an image field whose bytes are unusable. */
const BROKEN: Record<ImageField, 'invalid_init_image' | 'invalid_mask_image'> = {
  init_image: 'invalid_init_image',
  image: 'invalid_init_image',
  mask_image: 'invalid_mask_image',
  mask: 'invalid_mask_image',
  'image[]': 'invalid_init_image',
};

/**
 * The uploaded image of a field, decoded in full: its real type (from its bytes, never the client's
 * word), its size checked against maxPixels on the image itself, and every pixel read once, so a
 * truncated or corrupt file is a 400 here rather than a failed job.
 */
export async function readImage(req: Request, field: ImageField, maxPixels: number): Promise<CheckedImage | undefined> {
  const file = req.multipart?.files.get(field);
  if (!file) return undefined;
  // the type from the first bytes, before the whole file is read: noise is refused without reading it
  const head = Buffer.alloc(12);
  const handle = await open(file.path, 'r');
  try {
    await handle.read(head, 0, 12, 0);
  } finally {
    await handle.close();
  }
  if (!sniff(head)) throw new ServiceError('invalid_mime_type', `${field}: is not a PNG, JPEG or WebP image`, { field: field });
  // read and decoded a few at a time: 300 uploads ending together had each read its 9.5 MB file and
  // decoded it at once (the API peaked at 2.26 GB); waiting here costs them milliseconds each
  const release = await validations.acquire();
  try {
    return await checkImage(await readFile(file.path), field, maxPixels);
  } finally {
    release();
  }
}

/** Images read and decoded at once, at most: decoding is CPU work, more at once only holds more memory. */
const validations = new (class {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly most = Math.max(2, availableParallelism() * 2);

  async acquire(): Promise<() => void> {
    if (this.running >= this.most) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    return () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    };
  }
})();

/** readImage's checks for image bytes that came another way (base64 in a JSON body); `name` is the field as the caller wrote it. */
export async function checkImage(data: Buffer, field: ImageField, maxPixels: number, name: string = field): Promise<CheckedImage> {
  const contentType = sniff(data);
  if (!contentType) throw new ServiceError('invalid_mime_type', `${name}: is not a PNG, JPEG or WebP image`, { field: name });
  let meta: sharp.Metadata;
  try {
    meta = await sharp(data, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ServiceError(BROKEN[field], `${name}: is a ${contentType.slice(6).toUpperCase()} whose header cannot be read (${(err as Error).message})`, { field: name });
  }
  const { width, height } = meta;
  if (!width || !height) throw new ServiceError(BROKEN[field], `${name}: has no dimensions`, { field: name });
  // The header's own size, whatever width and height the request gives: a small file can claim a huge image.
  if (width * height > maxPixels) {
    throw new ServiceError('invalid_image_dimensions', `${name}: ${width}x${height} = ${width * height} pixels is over the maximum of ${maxPixels} (MAX_PIXELS)`, { field: name });
  }
  try {
    // One channel out is enough to make the decoder read every pixel; a tenth of stats()'s time.
    await sharp(data, { failOn: 'warning', limitInputPixels: maxPixels }).extractChannel(0).raw().toBuffer();
  } catch (err) {
    throw new ServiceError(BROKEN[field], `${name}: the image data is truncated or corrupt (${(err as Error).message})`, { field: name });
  }
  return { data, width, height, hasAlpha: !!meta.hasAlpha, contentType };
}
