import { pino, type Logger } from 'pino';
import { logDestination, REDACT } from '@sdq/contracts';
import type { WorkerConfig } from './config';

export function createLogger(config: Pick<WorkerConfig, 'logLevel'> & Partial<Pick<WorkerConfig, 'logFormat'>>, destination?: pino.DestinationStream): Logger {
  return pino(
    { level: config.logLevel, base: { service: 'sdq-worker', pid: process.pid }, redact: REDACT },
    destination ?? logDestination(config.logFormat ?? 'auto'),
  );
}
