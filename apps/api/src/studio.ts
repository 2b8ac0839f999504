/**
 * The web studio's static files (apps/api/studio) at /, with a Content-Security-Policy that allows
 * scripts and styles from this origin only (no inline script, no CDN), and images and fetches from here
 * and from where artifact URLs point (PUBLIC_URL, the S3 endpoint). The page talks to the public API
 * like any client, with the key in the Authorization header.
 */
import { resolve } from 'node:path';
import express, { type Router } from 'express';
import type { Config } from './config';

export const STUDIO_DIR = resolve(import.meta.dirname, '../studio');

/** The origins artifact URLs can point at: the public URL (local storage) or the S3 endpoint. */
function artifactOrigins(config: Config): string[] {
  const origins = new Set<string>([new URL(config.publicUrl).origin]);
  if ('s3' in config.storage) {
    const { endpoint, bucket, region } = config.storage.s3;
    if (endpoint) origins.add(new URL(endpoint).origin);
    // virtual-hosted AWS URLs: https://<bucket>.s3.<region>.amazonaws.com
    else origins.add(`https://${bucket}.s3.${region}.amazonaws.com`).add(`https://s3.${region}.amazonaws.com`);
  }
  return [...origins];
}

export function contentSecurityPolicy(config: Config): string {
  const artifacts = artifactOrigins(config).join(' ');
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' blob: data: ${artifacts}`,
    `connect-src 'self' ${artifacts}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function studioRoutes(config: Config, dir = STUDIO_DIR): Router {
  const router = express.Router();
  // Built on first use: with PORT=0 the public URL (an artifact origin) is known only once the server listens.
  let csp: string | undefined;
  router.use(
    express.static(dir, {
      index: 'index.html',
      redirect: false,
      dotfiles: 'ignore',
      fallthrough: true,
      setHeaders(res) {
        csp ??= contentSecurityPolicy(config);
        res.setHeader('Content-Security-Policy', csp);
        res.setHeader('X-Content-Type-Options', 'nosniff');
        res.setHeader('Referrer-Policy', 'no-referrer');
        res.setHeader('Cache-Control', 'no-cache');
      },
    }),
  );
  return router;
}

