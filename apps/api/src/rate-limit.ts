/** The per-key request limit of the generation endpoints, as Stability's (150 per 10 s by default). */
import type { RequestHandler } from 'express';
import { ServiceError } from '@sdq/contracts';
import type { RateLimiter } from '@sdq/credits';

/** After requireApiKey: counts the request against its key; over the limit, 429 with Retry-After. */
export function rateLimit(limiter: RateLimiter): RequestHandler {
  return async (req, res, next) => {
    try {
      const result = await limiter.hit(`key:${req.keyId}`);
      res.set('RateLimit-Limit', String(result.limit));
      if (!result.allowed) {
        const seconds = (limiter.windowMs / 1000).toString();
        throw new ServiceError('rate_limited', `more than ${result.limit} requests in ${seconds} s with this API key; retry in ${result.retry_after} s`, {
          headers: { 'Retry-After': String(result.retry_after) },
        });
      }
      res.set('RateLimit-Remaining', String(result.remaining));
      next();
    } catch (err) {
      next(err);
    }
  };
}
