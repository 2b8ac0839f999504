/**
 * Multipart bodies: multer (memory, with size limits), Stability's bracketed field names turned into
 * nested values, numbers parsed, and uploaded images checked with sharp (type and dimensions) before
 * anything is stored.
 */
import type { Request, RequestHandler } from 'express';
import multer from 'multer';
import sharp from 'sharp';
import { NUMERIC_FORM_FIELDS, ServiceError } from '@sdq/contracts';

export const IMAGE_FIELDS = ['init_image', 'mask_image', 'image'] as const;
export type ImageField = (typeof IMAGE_FIELDS)[number];

export function multipart(maxUploadBytes: number): RequestHandler {
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: maxUploadBytes, files: 3, fields: 200, fieldSize: 64 * 1024, parts: 210 },
  }).fields(IMAGE_FIELDS.map((name) => ({ name, maxCount: 1 })));
  return (req, res, next) => {
    if (!req.is('multipart/form-data')) {
      return next(new ServiceError('invalid_mime_type', `body: this endpoint takes multipart/form-data (got ${req.headers['content-type'] ?? 'no Content-Type'})`));
    }
    upload(req, res, (err: unknown) => {
      const e = err as { code?: string; field?: string } | undefined;
      if (e?.code === 'LIMIT_UNEXPECTED_FILE') return next(new ServiceError('bad_request', `${e.field}: is not a file field of this endpoint`));
      next(err);
    });
  };
}

/** `text_prompts[0][text]=a` -> `{ text_prompts: [{ text: 'a' }] }`; numeric fields become numbers. */
export function parseFormFields(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // multer may already have nested some fields (append-field); flatten back to bracketed keys first.
  for (const [rawKey, rawValue] of flatten(body ?? {}, '')) {
    const value = Array.isArray(rawValue) ? rawValue[rawValue.length - 1] : rawValue;
    const path = rawKey.match(/[^[\]]+|\[\]/g) ?? [rawKey];
    let node: Record<string, unknown> | unknown[] = out;
    for (let i = 0; i < path.length; i++) {
      const part = path[i];
      const last = i === path.length - 1;
      const key: string | number = /^\d+$/.test(part) ? Number(part) : part;
      if (typeof key === 'number' && key > 100) throw new ServiceError('bad_request', `${rawKey}: index too large`);
      if (last) {
        (node as Record<string | number, unknown>)[key] = convert(part, value);
      } else {
        const nextIsIndex = /^\d+$/.test(path[i + 1]);
        const existing = (node as Record<string | number, unknown>)[key];
        if (existing === undefined || typeof existing !== 'object') (node as Record<string | number, unknown>)[key] = nextIsIndex ? [] : {};
        node = (node as Record<string | number, unknown>)[key] as Record<string, unknown>;
      }
    }
  }
  return out;
}

function flatten(value: unknown, prefix: string): [string, unknown][] {
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return [[prefix, value]];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string') && prefix && !/\]$/.test(prefix)) return [[prefix, value]];
  const entries: [string, unknown][] = [];
  for (const [k, v] of Object.entries(value)) entries.push(...flatten(v, prefix ? `${prefix}[${k}]` : k));
  return entries;
}

function convert(field: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  if (NUMERIC_FORM_FIELDS.has(field)) return value.trim() === '' ? undefined : Number(value);
  if (field === 'extras') {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  return value;
}

export interface CheckedImage {
  data: Buffer;
  width: number;
  height: number;
  hasAlpha: boolean;
  contentType: string;
}

const FORMATS: Record<string, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

/** The uploaded image of a field, decoded enough to know its real type and size. */
export async function readImage(req: Request, field: ImageField): Promise<CheckedImage | undefined> {
  const files = req.files as Record<string, Express.Multer.File[]> | undefined;
  const file = files?.[field]?.[0];
  if (!file) return undefined;
  // The declared type is the client's word; what counts is what sharp finds in the bytes.
  let meta: sharp.Metadata;
  try {
    meta = await sharp(file.buffer).metadata();
  } catch {
    throw new ServiceError('invalid_mime_type', `${field}: is not a PNG, JPEG or WebP image`);
  }
  const contentType = meta.format ? FORMATS[meta.format] : undefined;
  if (!contentType || !meta.width || !meta.height) {
    throw new ServiceError('invalid_mime_type', `${field}: is ${meta.format ?? 'an unknown format'}, expected PNG, JPEG or WebP`);
  }
  return { data: file.buffer, width: meta.width, height: meta.height, hasAlpha: !!meta.hasAlpha, contentType };
}
