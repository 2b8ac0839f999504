/**
 * The one Express error handler: a ServiceError is answered from the catalogue, in the body of the dialect
 * that owns the path (dialects/); a Redis outage is 503; anything else is a 500 that names the request
 * id, with the stack in the log only.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type {} from './request-log';
import { type ErrorName, ServiceError, StorageUnavailableError } from '@sdq/contracts';
import { errorShapeFor } from './dialects';

export { ServiceError };

const REDIS_DOWN = /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Command timed out|MaxRetriesPerRequest|enableOfflineQueue/i;

export function isRedisDown(err: unknown): boolean {
  return err instanceof Error && (REDIS_DOWN.test(err.message) || err.name === 'MaxRetriesPerRequestError');
}

/** The catalogue name for an HTTP status that Express, its router or body-parser gave a client error. */
function clientErrorName(status: number): ErrorName {
  if (status === 408) return 'request_timeout';
  if (status === 413) return 'payload_too_large';
  if (status === 415) return 'unsupported_media_type';
  return 'bad_request';
}

/** Turns body-parser, router and storage failures into catalogue errors. */
function normalize(err: unknown): unknown {
  if (err instanceof ServiceError) return err;
  const e = err as { type?: string; code?: string; field?: string; status?: number; expose?: boolean; message?: string };
  if (e?.type === 'entity.parse.failed') return new ServiceError('bad_request', 'body: is not valid JSON', { field: 'body' });
  if (e?.type === 'entity.too.large') return new ServiceError('payload_too_large', 'body: is larger than this endpoint takes', { field: 'body' });
  if (e?.type === 'charset.unsupported') return new ServiceError('unsupported_media_type', `Content-Type: ${e.message}; send UTF-8`);
  if (e?.type === 'encoding.unsupported') return new ServiceError('unsupported_media_type', `Content-Encoding: ${e.message}; send gzip, deflate, br or none`);
  if (err instanceof StorageUnavailableError) return new ServiceError('service_unavailable', `${err.message}; retry shortly`);
  // Whatever else Express's parts answer as a client error (a path parameter that does not decode, a
  // compressed body that does not inflate, an aborted body) is the client's, with its status kept.
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose !== false) {
    return new ServiceError(clientErrorName(e.status), e.message?.slice(0, 200) || 'bad request');
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
    res.status(err.status).set(err.headers);
    if (err.code === 'service_unavailable') res.set('Retry-After', '5');
    res.json(errorShapeFor(req.path).body(id, err));
    return;
  }
  req.log?.error({ err: raw }, 'unhandled error');
  if (res.headersSent) {
    res.end();
    return;
  }
  res.status(500).json(errorShapeFor(req.path).body(id, new ServiceError('internal_error', id)));
};

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ServiceError('not_found', `no route ${req.method} ${req.path}`));
};
