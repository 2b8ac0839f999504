/**
 * Signing as the Standard Webhooks specification says (https://www.standardwebhooks.com):
 *
 *   webhook-id:        the message id, the same for every retry of one event
 *   webhook-timestamp: Unix seconds of this attempt
 *   webhook-signature: "v1,<base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`>", one per secret, space-separated
 *
 * The HMAC key is the base64-decoded part of a `whsec_...` secret. During a rotation's grace period a
 * message carries one signature per valid secret, so a receiver that still has the old secret accepts it.
 *
 * No function here puts a secret into an error message.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
export const HEADER_ID = 'webhook-id';
export const HEADER_TIMESTAMP = 'webhook-timestamp';
export const HEADER_SIGNATURE = 'webhook-signature';

/** How far a timestamp may be from the receiver's clock, either way (the reference libraries' 5 minutes). */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

/**
 * A new secret: `whsec_` and the base64 of `bytes` random bytes.
 * @param bytes key length, 24 to 64 as the specification allows; default 32.
 */
export function generateSecret(bytes = 32): string {
  if (!Number.isInteger(bytes) || bytes < 24 || bytes > 64) throw new RangeError(`secret length must be 24 to 64 bytes (got ${bytes})`);
  return SECRET_PREFIX + randomBytes(bytes).toString('base64');
}

/** The HMAC key of a secret. Throws without echoing the secret. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`webhook secret must start with ${SECRET_PREFIX}`);
  const encoded = secret.slice(SECRET_PREFIX.length);
  const key = Buffer.from(encoded, 'base64');
  // Buffer.from ignores what is not base64; re-encoding tells a real key from garbage.
  if (key.length === 0 || key.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '')) {
    throw new Error('webhook secret is not valid base64 after the whsec_ prefix');
  }
  return key;
}

export interface SignedContent {
  /** The webhook-id (message id). */
  id: string;
  /** Unix seconds. */
  timestamp: number;
  /** The exact bytes sent as the request body. */
  body: string | Buffer;
}

/** One `v1,<base64>` signature. */
export function sign(secret: string, { id, timestamp, body }: SignedContent): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** The three headers of one attempt, signed with every secret given (current first). */
export function signatureHeaders(content: SignedContent, secrets: readonly string[]): Record<string, string> {
  if (secrets.length === 0) throw new Error('at least one webhook secret is needed to sign');
  return {
    [HEADER_ID]: content.id,
    [HEADER_TIMESTAMP]: String(content.timestamp),
    [HEADER_SIGNATURE]: secrets.map((s) => sign(s, content)).join(' '),
  };
}

export interface VerifyOptions {
  /** Allowed clock difference in seconds, either way; default 300. */
  toleranceSeconds?: number;
  /** The receiver's clock in Unix ms; default Date.now(). */
  now?: number;
}

/**
 * True when the request carries a valid signature by `secret` and a timestamp within the tolerance.
 * `headers` as node's IncomingHttpHeaders (lower-case names) or a plain record.
 */
export function verify(
  secret: string,
  body: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = Date.now() }: VerifyOptions = {},
): boolean {
  const id = single(headers[HEADER_ID]);
  const timestampText = single(headers[HEADER_TIMESTAMP]);
  const signatures = single(headers[HEADER_SIGNATURE]);
  if (!id || !timestampText || !signatures || !/^\d+$/.test(timestampText)) return false;
  const timestamp = Number(timestampText);
  if (Math.abs(now / 1000 - timestamp) > toleranceSeconds) return false;

  const expected = Buffer.from(sign(secret, { id, timestamp, body }).slice('v1,'.length), 'base64');
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
