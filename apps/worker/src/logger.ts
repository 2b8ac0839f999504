import { pino, type Logger } from 'pino';
import { logDestination } from '@sdq/contracts';
import type { WorkerConfig } from './config';

/** Paths whose values never reach a log line: credentials in configs, payloads and errors. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  '*.*.secretAccessKey',
  '*.*.*.secretAccessKey',
  'accessKeyId',
  '*.accessKeyId',
  '*.*.accessKeyId',
  '*.*.*.accessKeyId',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'api_key',
  '*.api_key',
];

export function createLogger(config: Pick<WorkerConfig, 'logLevel'> & Partial<Pick<WorkerConfig, 'logFormat'>>, destination?: pino.DestinationStream): Logger {
  return pino(
    { level: config.logLevel, base: { service: 'sdq-worker', pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination ?? logDestination(config.logFormat ?? 'auto'),
  );
}
