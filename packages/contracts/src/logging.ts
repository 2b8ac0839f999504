/**
 * Where a process's log lines go: JSON lines (for collectors) unless the output is a terminal, where a
 * person reads them as one coloured line each (pino-pretty). LOG_FORMAT=json or pretty overrides.
 */
import { type DestinationStream, destination } from 'pino';
import pretty from 'pino-pretty';
import { z } from 'zod';

export const LOG_FORMAT = z.enum(['auto', 'json', 'pretty']).default('auto');

/**
 * Fields whose values never reach a log line, in any process: credentials (API keys, tokens, passwords,
 * webhook signing secrets, S3 keys) and webhook URLs (one may carry the receiver's token).
 */
export const SECRET_FIELDS = ['api_key', 'apiKey', 'secret', 'token', 'adminToken', 'password', 'secretAccessKey', 'accessKeyId', 'webhook'] as const;

/** pino redact paths: each secret field at the top of a line's object and up to three levels down, and credential headers. */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`, `*.*.*.${field}`]),
];

/** pino's redact option for every sdq process. */
export const REDACT = { paths: [...REDACT_PATHS], censor: '[redacted]' };
export type LogFormat = z.infer<typeof LOG_FORMAT>;

/**
 * The destination for a pino logger. JSON lines go to stdout asynchronously: a line is written at once
 * when no write is in flight, and lines that come meanwhile go out together, so a busy API makes one
 * write per burst instead of one per line (a tenth of its time under load went to those writes). pino
 * flushes what is pending when the process exits; only a SIGKILL can lose the last lines.
 */
export function logDestination(format: LogFormat): DestinationStream {
  const prettyLines = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!prettyLines) return destination({ dest: 1, sync: false });
  // synchronous, in this thread: a line written just before an exit is never lost
  return pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname', singleLine: true, sync: true });
}
