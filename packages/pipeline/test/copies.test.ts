/**
 * Schedulers stay self-contained, as diffusers keeps them: a helper several need is copied, not shared,
 * and each copy says where from (`// Copied from <file>#<method>`). This fails when a copy drifts from
 * its source, so a fix made in one place is made in all.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = new URL('../src/schedulers/', import.meta.url).pathname;

/** The text of `name`'s method in a class body: from its line to the first line closing it at its indent. */
function methodText(source: string, name: string): string | undefined {
  const lines = source.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^  (private |protected |public )?${name}\\(`).test(l));
  if (start < 0) return undefined;
  const end = lines.findIndex((l, i) => i > start && l === '  }');
  return lines.slice(start, end + 1).join('\n');
}

const copies = readdirSync(DIR)
  .filter((f) => f.endsWith('.ts'))
  .flatMap((file) => [...readFileSync(join(DIR, file), 'utf8').matchAll(/\/\/ Copied from ([\w-]+\.ts)#(\w+)/g)].map((m) => ({ file, from: m[1], method: m[2] })));

describe('copied scheduler helpers', () => {
  it('there are copies to check', () => expect(copies.length).toBeGreaterThanOrEqual(15));
  it.each(copies)('$file#$method is $from#$method', ({ file, from, method }) => {
    const copy = methodText(readFileSync(join(DIR, file), 'utf8'), method);
    const original = methodText(readFileSync(join(DIR, from), 'utf8'), method);
    expect(original, `${from} has no ${method}`).toBeDefined();
    expect(copy).toBe(original);
  });
});
