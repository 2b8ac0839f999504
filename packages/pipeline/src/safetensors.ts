/**
 * The safetensors reader for files users bring (LoRAs, embeddings): an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range, then the raw bytes. Every
 * number in the header is checked against the file before a byte is read: a truncated or hostile file
 * is a SafetensorsError naming what is wrong, never an out-of-range read or a crash. Nothing here
 * executes what it reads (the pickle formats, `.pt` / `.ckpt` / `.bin`, are never opened: see
 * `adapterFileProblem`).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { float16BitsToFloat32 } from './fp16';

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/** Bytes per element of each dtype the format defines. */
const DTYPE_BYTES: Readonly<Record<string, number>> = Object.freeze(Object.assign(Object.create(null) as Record<string, number>, { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }));

/** A header larger than this is refused before it is parsed (real ones are kilobytes; the spec allows 100 MB). */
const MAX_HEADER_BYTES = 100 * 2 ** 20;

export interface TensorEntry {
  dtype: string;
  shape: number[];
  /** The tensor's bytes, a view into the file's buffer (not copied). */
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  /** `__metadata__`: string to string, as the format says; null-prototype. */
  metadata: Record<string, string>;
  /** By tensor name, in the header's order. */
  tensors: Map<string, TensorEntry>;
}

/** Reads and checks a whole file (adapters are megabytes: read at once, bounds-checked). */
export function readSafetensorsFile(path: string, maxBytes = 4 * 2 ** 30): SafetensorsFile {
  const size = statSync(path).size;
  if (size > maxBytes) throw new SafetensorsError(path, `is ${size} bytes, over the ${maxBytes} this reader takes`);
  return parseSafetensors(readFileSync(path), path);
}

/** A tensor as the header describes it: where its bytes are in the data section. */
export interface TensorHeader {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Reads and checks only a file's header against its size (a listing of large files reads kilobytes,
 * not the tensors): the same checks as parseSafetensors, the data not read.
 */
export function readSafetensorsHeader(path: string): { metadata: Record<string, string>; tensors: Map<string, TensorHeader> } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || readSync(fd, head, 0, 8, 0) !== 8) throw new SafetensorsError(path, `is ${size} bytes: too short for a safetensors header`);
    const length = headerLength(head, size, path);
    const text = Buffer.alloc(length);
    if (readSync(fd, text, 0, length, 8) !== length) throw new SafetensorsError(path, 'its header could not be read whole');
    return checkHeader(text, size - 8 - length, path);
  } finally {
    closeSync(fd);
  }
}

/** Parses and checks a safetensors buffer; `name` is what errors call it. */
export function parseSafetensors(buf: Uint8Array, name = 'safetensors'): SafetensorsFile {
  if (buf.byteLength < 8) throw new SafetensorsError(name, `is ${buf.byteLength} bytes: too short for a safetensors header`);
  const length = headerLength(buf, buf.byteLength, name);
  const data = buf.subarray(8 + length);
  const { metadata, tensors: headers } = checkHeader(buf.subarray(8, 8 + length), data.byteLength, name);
  const tensors = new Map<string, TensorEntry>();
  for (const [key, t] of headers) tensors.set(key, { dtype: t.dtype, shape: t.shape, bytes: data.subarray(t.begin, t.end) });
  return { metadata, tensors };
}

/** The header's length from the first 8 bytes, checked against the file's size. */
function headerLength(first8: Uint8Array, size: number, name: string): number {
  const headerBytes = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (headerBytes > BigInt(size - 8)) throw new SafetensorsError(name, `its header says ${headerBytes} bytes, more than the ${size - 8} after it (truncated, or not safetensors)`);
  if (headerBytes > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(name, `its header is ${headerBytes} bytes, over ${MAX_HEADER_BYTES}`);
  return Number(headerBytes);
}

/** Checks a header's JSON against the data section's length. */
function checkHeader(text: Uint8Array, dataLength: number, name: string): { metadata: Record<string, string>; tensors: Map<string, TensorHeader> } {
  const fail = (reason: string): never => {
    throw new SafetensorsError(name, reason);
  };
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(text));
  } catch (err) {
    fail(`its header is not JSON: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('its header is not a JSON object');
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const tensors = new Map<string, TensorHeader>();
  const ranges: [number, number, string][] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('its __metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`its __metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`tensor ${key}: not an object`);
    const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) fail(`tensor ${key}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${key}: shape must be up to 8 non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) fail(`tensor ${key}: data_offsets must be two non-negative integers`);
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) fail(`tensor ${key}: bytes ${begin} to ${end} are outside the ${dataLength} bytes of data`);
    const elements = (shape as number[]).reduce((n, d) => n * d, 1);
    if (elements * DTYPE_BYTES[dtype as string] !== end - begin) fail(`tensor ${key}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${elements * DTYPE_BYTES[dtype as string]} bytes, its offsets give ${end - begin}`);
    ranges.push([begin, end, key]);
    tensors.set(key, { dtype: dtype as string, shape: shape as number[], begin, end });
  }
  // tensors may not share bytes: a hostile file could make one write show through another
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) if (ranges[i][0] < ranges[i - 1][1]) fail(`tensors ${ranges[i - 1][2]} and ${ranges[i][2]} overlap`);
  return { metadata, tensors };
}

/** A floating-point tensor's values as float32 (F16, BF16, F32, F64); other dtypes are refused. */
export function tensorToFloat32(entry: TensorEntry, name = 'tensor'): Float32Array {
  const { bytes, dtype } = entry;
  // copied to an aligned buffer of its own: a view into the file may start at any byte
  const aligned = new Uint8Array(bytes).buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned);
    case 'F16':
      return float16BitsToFloat32(new Uint16Array(aligned));
    case 'BF16': {
      const halves = new Uint16Array(aligned);
      const words = new Uint32Array(halves.length);
      for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
      return new Float32Array(words.buffer);
    }
    case 'F64':
      return Float32Array.from(new Float64Array(aligned));
    default:
      throw new Error(`${name}: ${dtype} is not a floating-point dtype`);
  }
}

/**
 * Why a file users bring may not be loaded, or undefined when it may: only `.safetensors`. The pickle
 * formats run code when they are loaded, so they are never opened, whatever they hold.
 */
export function adapterFileProblem(fileName: string): string | undefined {
  if (/\.safetensors$/i.test(fileName)) return undefined;
  if (/\.(pt|pth|ckpt|bin|pkl|pickle)$/i.test(fileName)) return `${fileName} is a pickle file (it runs code when loaded): only .safetensors files are read; convert it to safetensors`;
  return `${fileName} is not a .safetensors file`;
}
