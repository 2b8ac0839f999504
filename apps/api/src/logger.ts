import { pino, type Logger } from 'pino';
import { logDestination } from '@sdq/contracts';
import type { Config } from './config';

/** Paths whose values never reach a log line: credentials in headers and bodies. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'api_key',
  '*.api_key',
  'apiKey',
  '*.apiKey',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'adminToken',
  '*.adminToken',
  'password',
  '*.password',
  // Webhook URLs: one may carry the receiver's token (webhook secrets are covered by `secret` above).
  'webhook',
  '*.webhook',
];

export function createLogger(config: Pick<Config, 'logLevel'> & Partial<Pick<Config, 'logFormat'>>, destination?: pino.DestinationStream, service = 'sdq-api'): Logger {
  return pino({ level: config.logLevel, base: { service }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination ?? logDestination(config.logFormat ?? 'auto'));
}
