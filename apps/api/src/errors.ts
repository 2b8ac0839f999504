/**
 * The one Express error handler: a ServiceError is answered from the catalogue; a Redis outage is 503;
 * anything else is a 500 that names the request id, with the stack in the log only.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type {} from 'pino-http';
import { type ErrorBody, ServiceError } from '@sdq/contracts';

export { ServiceError };

const REDIS_DOWN = /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Command timed out|MaxRetriesPerRequest|enableOfflineQueue/i;

export function isRedisDown(err: unknown): boolean {
  return err instanceof Error && (REDIS_DOWN.test(err.message) || err.name === 'MaxRetriesPerRequestError');
}

/** Turns body-parser and multer failures into catalogue errors. */
function normalize(err: unknown): unknown {
  if (err instanceof ServiceError) return err;
  const e = err as { type?: string; code?: string; field?: string; status?: number; message?: string };
  if (e?.type === 'entity.parse.failed') return new ServiceError('bad_request', 'body: is not valid JSON');
  if (e?.type === 'entity.too.large') return new ServiceError('bad_request', 'body: is too large');
  if (e?.code === 'LIMIT_FILE_SIZE') return new ServiceError('invalid_file_size', `${e.field}: is larger than the upload limit`);
  if (typeof e?.code === 'string' && e.code.startsWith('LIMIT_')) return new ServiceError('bad_request', `${e.field ?? 'body'}: ${e.message}`);
  if (e?.message === 'Unexpected end of form' || e?.message === 'Multipart: Boundary not found') {
    return new ServiceError('bad_request', `body: malformed multipart form (${e.message})`);
  }
  // @sdq/credits' input errors (a bad ledger cursor, amount or Idempotency-Key) are the caller's.
  if (e?.code === 'invalid_credits_input' || e?.code === 'invalid_amount') return new ServiceError('bad_request', e.message ?? 'bad input');
  if (e?.code === 'invalid_idempotency_key') return new ServiceError('invalid_idempotency_key', e.message ?? 'bad Idempotency-Key');
  if (isRedisDown(err)) return new ServiceError('service_unavailable', 'the job store (Redis) is unreachable; retry shortly');
  return err;
}

export const errorHandler: ErrorRequestHandler = (raw, req, res, _next) => {
  const err = normalize(raw);
  const id = String(req.id ?? '');
  if (err instanceof ServiceError) {
    if (err.status >= 500) req.log?.warn({ err: raw instanceof Error ? raw.message : raw, name: err.code }, err.message);
    const body: ErrorBody = { id, name: err.code, message: err.message };
    res.status(err.status).set(err.headers);
    if (err.code === 'service_unavailable') res.set('Retry-After', '5');
    res.json(body);
    return;
  }
  req.log?.error({ err: raw }, 'unhandled error');
  if (res.headersSent) {
    res.end();
    return;
  }
  const internal = new ServiceError('internal_error', id);
  res.status(500).json({ id, name: internal.code, message: internal.message } satisfies ErrorBody);
};

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ServiceError('not_found', `no route ${req.method} ${req.path}`));
};
