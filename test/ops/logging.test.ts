/**
 * Log lines: JSON when the output is not a terminal, one readable line each on a terminal (LOG_FORMAT
 * pretty stands in for the terminal here), with the same redaction either way.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

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
});
