/**
 * The one Express error handler: a ServiceError is answered from the catalogue; a Redis outage is 503;
 * anything else is a 500 that names the request id, with the stack in the log only.
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type {} from './request-log';
import { type A1111ErrorBody, type ErrorBody, type ErrorName, messageField, type OpenAIErrorBody, ServiceError, StorageUnavailableError, type V2ErrorBody } from '@sdq/contracts';

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
  if (e?.type === 'entity.parse.failed') return new ServiceError('bad_request', 'body: is not valid JSON');
  if (e?.type === 'entity.too.large') return new ServiceError('payload_too_large', 'body: is larger than this endpoint takes');
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
    res.json(errorBody(req.path, id, err));
    return;
  }
  req.log?.error({ err: raw }, 'unhandled error');
  if (res.headersSent) {
    res.end();
    return;
  }
  res.status(500).json(errorBody(req.path, id, new ServiceError('internal_error', id)));
};

/** OpenAI's error types by status: what its SDK's error classes and clients branch on. */
function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'insufficient_quota';
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

/** The OpenAI routes answer in OpenAI's shape. */
export function isOpenAIPath(path: string): boolean {
  return path.startsWith('/v1/images/') || path === '/v1/models';
}

/**
 * v1 and sdq's own routes: `{id, name, message}`; Stability's v2beta routes: `{id, name, errors: [message]}`;
 * OpenAI's: `{error: {message, type, param, code}}` (param: the field the message starts with, if any).
 */
function errorBody(path: string, id: string, err: ServiceError): ErrorBody | V2ErrorBody | OpenAIErrorBody | A1111ErrorBody {
  if (path.startsWith('/v2beta/')) return { id, name: err.code, errors: [err.message] };
  // AUTOMATIC1111's handler answers {error, detail, body, errors}; error is sdq's name here
  if (path.startsWith('/sdapi/')) return { error: err.code, detail: err.message, body: '', errors: err.message };
  if (isOpenAIPath(path)) {
    return { error: { message: err.message, type: openaiType(err.status), param: messageField(err.message), code: err.code } };
  }
  return { id, name: err.code, message: err.message };
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ServiceError('not_found', `no route ${req.method} ${req.path}`));
};
