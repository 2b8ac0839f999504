/**
 * Where a process's log lines go: JSON lines (for collectors) unless the output is a terminal, where a
 * person reads them as one coloured line each (pino-pretty). LOG_FORMAT=json or pretty overrides.
 */
import { type DestinationStream, destination } from 'pino';
import pretty from 'pino-pretty';
import { z } from 'zod';

export const LOG_FORMAT = z.enum(['auto', 'json', 'pretty']).default('auto');
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
