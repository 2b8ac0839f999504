#!/usr/bin/env node
/**
 * `node scripts/run.mjs <entry> [args...]`: builds dist/ (about half a second; scripts/build.mjs) and runs
 * dist/<entry>.js in this same process, with the args after the entry name. `npm start` and
 * `npm run start:*` go through here, so they always run the tree as it is, compiled, in one process that
 * receives signals itself (no shell between npm and node).
 */
import { join, resolve } from 'node:path';
import { buildAll, ENTRIES } from './build.mjs';

const [name] = process.argv.splice(2, 1);
if (!name || !Object.hasOwn(ENTRIES, name)) {
  process.stderr.write(`usage: node scripts/run.mjs <${Object.keys(ENTRIES).join('|')}> [args...]\n`);
  process.exit(2);
}
await buildAll({ quiet: true });
const bundle = join(resolve(import.meta.dirname, '..'), 'dist', `${name}.js`);
// the entry sees itself as the program, as if started as `node dist/<name>.js`
process.argv[1] = bundle;
await import(bundle);
