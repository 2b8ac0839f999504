import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { bindLog } from './request-log';
import { type KeyScope, scopeAllows, ServiceError } from '@sdq/contracts';
import type { Store } from './store';

declare module 'express-serve-static-core' {
  interface Request {
    accountId?: string;
    keyId?: string;
    /** The API key's scope; undefined for the ADMIN_TOKEN. */
    scope?: KeyScope;
  }
}

const CHALLENGE = { 'WWW-Authenticate': 'Bearer' };

/**
 * The key of an Authorization header: `Bearer <key>` (or `Key` / `Token <key>`); HTTP Basic with the key as the password (any
 * user name), as AUTOMATIC1111 clients send `--api-auth` credentials; or the key as the whole value
 * (Stability's spec declares the API key as the header itself, and its clients send it so). Another
 * scheme is no key.
 */
export function bearer(header: string | undefined): string | undefined {
  const value = (header ?? '').trim();
  // fal's clients send `Key <key>`, Replicate's older ones `Token <key>`
  const match = /^(?:Bearer|Key|Token)\s+(\S+)$/i.exec(value);
  if (match) return match[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(value);
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 && colon < decoded.length - 1 ? decoded.slice(colon + 1) : undefined;
  }
  return /^[^\s]+$/.test(value) && !/^(bearer|key|token)$/i.test(value) ? value : undefined;
}

/** Every /v1 route but health, artifacts and admin: a valid, unrevoked API key. */
export function requireApiKey(store: Store): RequestHandler {
  return async (req, _res, next) => {
    try {
      const token = bearer(req.headers.authorization);
      if (!token) throw new ServiceError('unauthorized', 'missing API key: send Authorization: Bearer <key>', { headers: CHALLENGE });
      const found = await store.authenticate(token);
      if (!found) throw new ServiceError('unauthorized', 'unknown or revoked API key', { headers: CHALLENGE });
      req.accountId = found.accountId;
      req.keyId = found.keyId;
      req.scope = found.scope;
      bindLog(req, { account_id: found.accountId, key_id: found.keyId });
      next();
    } catch (err) {
      next(err);
    }
  };
}

/** After requireApiKey: 403 unless the key's scope includes `needs`. */
export function requireScope(needs: KeyScope): RequestHandler {
  return (req, _res, next) => {
    if (req.scope && scopeAllows(req.scope, needs)) return next();
    next(new ServiceError('permission_denied', `this API key has scope ${req.scope ?? 'none'}; this endpoint needs scope ${needs}`));
  };
}

/**
 * /v1/admin: the ADMIN_TOKEN (compared in constant time) or an API key with scope admin. A key without
 * that scope is 403; an unknown token is 401.
 */
export function requireAdmin(adminToken: string | undefined, store: Store): RequestHandler {
  const expected = adminToken ? createHash('sha256').update(adminToken).digest() : undefined;
  return async (req, _res, next) => {
    try {
      const token = bearer(req.headers.authorization);
      if (!token) throw new ServiceError('unauthorized', 'missing admin credentials: send Authorization: Bearer <ADMIN_TOKEN or an admin API key>', { headers: CHALLENGE });
      if (expected && timingSafeEqual(createHash('sha256').update(token).digest(), expected)) return next();
      const key = token.startsWith('sk-') ? await store.authenticate(token) : undefined;
      if (key) {
        if (!scopeAllows(key.scope, 'admin')) throw new ServiceError('permission_denied', `this API key has scope ${key.scope}; the admin API needs scope admin`);
        req.accountId = key.accountId;
        req.keyId = key.keyId;
        req.scope = key.scope;
        bindLog(req, { account_id: key.accountId, key_id: key.keyId });
        return next();
      }
      if (!expected) throw new ServiceError('permission_denied', 'the admin API takes only admin API keys here: ADMIN_TOKEN is not set');
      throw new ServiceError('unauthorized', 'wrong admin token or unknown API key', { headers: CHALLENGE });
    } catch (err) {
      next(err);
    }
  };
}
