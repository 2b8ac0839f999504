import { pino, type Logger } from 'pino';
import { logDestination } from '@sdq/contracts';
import type { DeliveryConfig } from './config';

/** Paths whose values never reach a log line: webhook secrets and URLs (a URL may carry a receiver's token), storage keys. */
export const REDACT_PATHS = [
  'secret',
  '*.secret',
  'webhook',
  '*.webhook',
  'url',
  '*.url',
  'token',
  '*.token',
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  '*.*.secretAccessKey',
  'accessKeyId',
  '*.accessKeyId',
  '*.*.accessKeyId',
];

export function createLogger(config: Pick<DeliveryConfig, 'logLevel'> & Partial<Pick<DeliveryConfig, 'logFormat'>>, destination?: pino.DestinationStream): Logger {
  return pino({ level: config.logLevel, base: { service: 'sdq-webhooks' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination ?? logDestination(config.logFormat ?? 'auto'));
}
