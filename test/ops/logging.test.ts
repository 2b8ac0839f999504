/**
 * Log lines: JSON when the output is not a terminal, one readable line each on a terminal (LOG_FORMAT
 * pretty stands in for the terminal here), with the same redaction either way.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { SECRET_FIELDS } from '@sdq/contracts';

function logLine(format: string, app: 'api' | 'worker'): string {
  const script = `const { createLogger } = await import('./apps/${app}/src/logger.ts');
    createLogger({ logLevel: 'info', logFormat: '${format}' }).info({ api_key: 'sk-do-not-log', job_id: 'j1' }, 'job queued');`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return run.stdout.trim();
}

describe('log lines', () => {
  it.each(['api', 'worker'] as const)('%s: JSON off a terminal, a readable line with pretty; secrets redacted in both', (app) => {
    const json = logLine('auto', app);
    expect(JSON.parse(json)).toMatchObject({ msg: 'job queued', job_id: 'j1', api_key: '[redacted]' });
    const pretty = logLine('pretty', app);
    expect(pretty.split('\n')).toHaveLength(1);
    expect(pretty).toMatch(/^\[\d\d:\d\d:\d\d\] INFO: job queued/);
    expect(pretty).toContain('j1');
    expect(pretty).not.toContain('sk-do-not-log');
    expect(() => JSON.parse(pretty)).toThrow();
  });

  it.each(['api', 'worker', 'webhooks'] as const)('%s: a secret in any field of the one redaction list, at any depth to 3, never appears', (app) => {
    // one line per depth, every secret field with its own marker value
    const lines = [0, 1, 2, 3].map((depth) => {
      const fields = Object.fromEntries(SECRET_FIELDS.map((f) => [f, `SECRET-${f}-${depth}`]));
      let value: Record<string, unknown> = fields;
      for (let d = 0; d < depth; d++) value = { nested: value };
      return value;
    });
    const script = `const { createLogger } = await import('./apps/${app}/src/logger.ts');
      const log = createLogger({ logLevel: 'info', logFormat: 'json' });
      for (const fields of ${JSON.stringify(lines)}) log.info(fields, 'line');
      log.info({ req: { headers: { authorization: 'Bearer SECRET-header', cookie: 'SECRET-cookie', 'x-api-key': 'SECRET-xkey' } } }, 'request');`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(5);
    expect(run.stdout).not.toContain('SECRET-');
    expect(run.stdout).toContain('[redacted]');
  });
});
