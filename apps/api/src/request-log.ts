/**
 * One log line per request, and the request's logger for the lines a handler writes. Each request gets
 * an id (also the X-Request-Id header and the `id` of its error body). The line names the method, the URL
 * (signatures redacted), the remote address, the status and the time taken, and what the request
 * learned on the way (account, key, job) through bindLog. It never carries headers, so no credential
 * reaches the log. The request's own child logger is made only when a handler logs something: a child per
 * request (and more per binding) was a measurable share of the API's time under load.
 */
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

declare module 'node:http' {
  interface IncomingMessage {
    /** The request id (X-Request-Id). */
    id: string;
    /** This request's logger: its lines carry the request and what bindLog added. */
    log: Logger;
  }
}

/** Query parameters that are credentials (a signed artifact URL's signature): their values never reach a log. */
const SECRET_PARAMS = /([?&](?:signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&#]*/gi;

export function redactQuery(url: string): string {
  return url.replace(SECRET_PARAMS, '$1[redacted]');
}

const FIELDS = Symbol('log fields');
type WithFields = { [FIELDS]?: Record<string, unknown> };

/** Adds fields (account_id, job_id, ...) to the request's log line and to its logger's lines from now on. */
export function bindLog(req: { log: Logger }, fields: Record<string, string>): void {
  const own = (req as WithFields)[FIELDS];
  if (own) Object.assign(own, fields);
}

export function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    const id = randomUUID();
    res.setHeader('X-Request-Id', id);
    req.id = id;
    const info = { id, method: req.method, url: redactQuery(req.originalUrl ?? req.url), remote: req.socket.remoteAddress };
    const fields: Record<string, unknown> = Object.create(null);
    (req as WithFields)[FIELDS] = fields;
    let child: Logger | undefined;
    let bound = 0;
    Object.defineProperty(req, 'log', {
      configurable: true,
      get: () => {
        const count = Object.keys(fields).length;
        if (!child || count !== bound) {
          child = logger.child({ req: info, ...fields });
          bound = count;
        }
        return child;
      },
    });
    let logged = false;
    const done = (msg: string) => {
      if (logged) return;
      logged = true;
      const status = res.statusCode;
      const line = { req: info, ...fields, res: { status }, responseTime: Math.round(performance.now() - started) };
      if (status >= 500) logger.error(line, msg);
      else logger.info(line, msg);
    };
    res.once('finish', () => done('request completed'));
    res.once('close', () => done(res.writableFinished ? 'request completed' : 'request aborted'));
    next();
  };
}
