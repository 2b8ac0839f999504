import { pino, type Logger } from 'pino';
import { logDestination, REDACT } from '@sdq/contracts';
import type { Config } from './config';

export function createLogger(config: Pick<Config, 'logLevel'> & Partial<Pick<Config, 'logFormat'>>, destination?: pino.DestinationStream, service = 'sdq-api'): Logger {
  return pino({ level: config.logLevel, base: { service }, redact: REDACT }, destination ?? logDestination(config.logFormat ?? 'auto'));
}
