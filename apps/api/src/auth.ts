import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import type {} from 'pino-http';
import { ServiceError } from '@sdq/contracts';
import type { Store } from './store';

declare module 'express-serve-static-core' {
  interface Request {
    accountId?: string;
    keyId?: string;
  }
}

const CHALLENGE = { 'WWW-Authenticate': 'Bearer' };

function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

/** Every /v1 route but health, artifacts and admin: a valid, unrevoked API key. */
export function requireApiKey(store: Store): RequestHandler {
  return async (req, _res, next) => {
    try {
      const token = bearer(req.headers.authorization);
      if (!token) throw new ServiceError('unauthorized', 'missing API key: send Authorization: Bearer <key>', CHALLENGE);
      const found = await store.authenticate(token);
      if (!found) throw new ServiceError('unauthorized', 'unknown or revoked API key', CHALLENGE);
      req.accountId = found.accountId;
      req.keyId = found.keyId;
      req.log = req.log?.child({ account_id: found.accountId, key_id: found.keyId });
      next();
    } catch (err) {
      next(err);
    }
  };
}

/** /v1/admin: the ADMIN_TOKEN, compared in constant time. */
export function requireAdmin(adminToken: string | undefined): RequestHandler {
  const expected = adminToken ? createHash('sha256').update(adminToken).digest() : undefined;
  return (req, _res, next) => {
    if (!expected) return next(new ServiceError('permission_denied', 'the admin API is disabled: ADMIN_TOKEN is not set'));
    const token = bearer(req.headers.authorization);
    if (!token) return next(new ServiceError('unauthorized', 'missing admin token: send Authorization: Bearer <ADMIN_TOKEN>', CHALLENGE));
    const given = createHash('sha256').update(token).digest();
    if (!timingSafeEqual(given, expected)) return next(new ServiceError('unauthorized', 'wrong admin token', CHALLENGE));
    next();
  };
}
