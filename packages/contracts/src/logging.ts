/**
 * Where a process's log lines go: JSON lines (for collectors) unless the output is a terminal, where a
 * person reads them as one coloured line each (pino-pretty). LOG_FORMAT=json or pretty overrides.
 */
import type { DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import { z } from 'zod';

export const LOG_FORMAT = z.enum(['auto', 'json', 'pretty']).default('auto');
export type LogFormat = z.infer<typeof LOG_FORMAT>;

/** The destination for a pino logger: undefined = pino's own JSON to stdout. */
export function logDestination(format: LogFormat): DestinationStream | undefined {
  const prettyLines = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!prettyLines) return undefined;
  // synchronous, in this thread: a line written just before an exit is never lost
  return pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname', singleLine: true, sync: true });
}
