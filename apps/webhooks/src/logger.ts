import { pino, type Logger } from 'pino';
import { logDestination, REDACT } from '@sdq/contracts';
import type { DeliveryConfig } from './config';

export function createLogger(config: Pick<DeliveryConfig, 'logLevel'> & Partial<Pick<DeliveryConfig, 'logFormat'>>, destination?: pino.DestinationStream): Logger {
  return pino({ level: config.logLevel, base: { service: 'sdq-webhooks' }, redact: REDACT }, destination ?? logDestination(config.logFormat ?? 'auto'));
}
