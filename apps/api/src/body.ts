/**
 * JSON bodies and query strings, read the one way every route shares: parsed with a size limit, then
 * walked once for the keys no client may send (`__proto__`, `constructor`, `prototype`) and for depth,
 * before any route, schema or fingerprint sees them.
 */
import express, { type RequestHandler } from 'express';
import { describeTreeProblem, findTreeProblem, ServiceError, treeProblemField } from '@sdq/contracts';

const refuseHostileBody: RequestHandler = (req, _res, next) => {
  const problem = findTreeProblem(req.body);
  next(problem ? new ServiceError('bad_request', describeTreeProblem(problem), { field: treeProblemField(problem) }) : undefined);
};

/** The charset parameter of a Content-Type, if any. */
export function charsetOf(contentType: string | undefined): string | undefined {
  return /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(contentType ?? '')?.[1];
}

/** JSON is UTF-8 (RFC 8259): any other declared charset is refused rather than decoded by guesswork. */
const requireUtf8: RequestHandler = (req, _res, next) => {
  const charset = charsetOf(req.headers['content-type']);
  if (charset === undefined || /^utf-?8$/i.test(charset)) return next();
  next(new ServiceError('unsupported_media_type', `Content-Type: charset ${JSON.stringify(charset.slice(0, 40))} is not accepted; send UTF-8`));
};

/** A JSON body of at most `limit` (body-parser's syntax: '64kb', '1mb'), checked for hostile keys. */
export function jsonBody(limit: string): RequestHandler[] {
  return [requireUtf8, express.json({ limit }), refuseHostileBody];
}

/** Every request's query string: Express gives it without a prototype; the forbidden names are refused too. */
export const refuseHostileQuery: RequestHandler = (req, _res, next) => {
  const problem = findTreeProblem(req.query);
  next(problem ? new ServiceError('bad_request', describeTreeProblem(problem, 'query'), { field: treeProblemField(problem, 'query') }) : undefined);
};
