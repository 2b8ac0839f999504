/**
 * Every environment variable the API and the worker read is in a table row of docs/environment.md, so a new setting
 * cannot ship undocumented.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { API_ENV_NAMES } from '../../apps/api/src/config';
import { WORKER_ENV_NAMES } from '../../apps/worker/src/config';
import { ROOT } from '../e2e/support';

const rows = readFileSync(join(ROOT, 'docs/environment.md'), 'utf8').split('\n').filter((l) => l.startsWith('| '));
const documented = new Set(rows.flatMap((row) => [...row.split(' | ')[0].matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1])));

describe('the README environment tables', () => {
  it.each([
    ['API', API_ENV_NAMES],
    ['worker', WORKER_ENV_NAMES],
  ])('document every variable the %s reads', (_, names) => {
    expect(names.length).toBeGreaterThan(10);
    expect(names.filter((n) => !documented.has(n))).toEqual([]);
  });
});
