/**
 * Which to run: the compiled bundle dist/<name>.js (scripts/build.mjs), when it is at least as new as
 * every source it was built from, else the TypeScript entry through tsx, so a checkout edited since the
 * last build runs what it holds. About 100 stat calls: a millisecond or two.
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

/** The bundle's path when it is current, else undefined. */
export function currentBundle(name) {
  const bundle = join(ROOT, 'dist', `${name}.js`);
  try {
    statSync(bundle);
    // every source of every bundle: a CLI's commands sit in chunks of their own
    const built = JSON.parse(readFileSync(join(ROOT, 'dist', 'built.json'), 'utf8'));
    for (const input of built.inputs) if (statSync(join(ROOT, input)).mtimeMs > built.at) return undefined;
    return bundle;
  } catch {
    return undefined;
  }
}

/** Runs dist/<name>.js when current, else `source` (a TypeScript file) through tsx. */
export async function runEntry(name, source) {
  const bundle = currentBundle(name);
  if (bundle) {
    await import(bundle);
    return;
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(source);
}
