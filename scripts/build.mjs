#!/usr/bin/env node
/**
 * Compiles sdq once, to plain JavaScript in dist/: one ES module per entry point (the three processes
 * and the two CLIs), with sdq's own packages inside and every npm dependency left to node_modules.
 * Runs after `npm ci` (the root `prepare` script), before `npm start`, and in the Docker images, so
 * nothing compiles TypeScript while it starts. Plain node: it must run before anything is built.
 *
 * Files read beside a module at run time (Lua scripts, prices.json, the studio) stay where they are in the
 * tree: each source file's `import.meta.url` and `import.meta.dirname` are rewritten to its own place,
 * relative to the bundle, so `new URL('./reserve.lua', import.meta.url)` finds the file it always did.
 * The tree therefore travels with dist/ (the images copy both).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = join(ROOT, 'dist');

/** dist/<name>.js <- its TypeScript entry (entries.json: the Docker test reads it too). */
export const ENTRIES = JSON.parse(readFileSync(join(ROOT, 'scripts/entries.json'), 'utf8'));

/** sdq's own sources go in the bundle, and each keeps its own location for files beside it. */
const ownPlace = {
  name: 'own-place',
  setup(b) {
    // npm packages (not @sdq/*) stay imports, of the very file each workspace resolves today (npm does
    // not hoist every package, so a bare name from dist/ could miss), written relative to dist/
    b.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.path.startsWith('@sdq/') || args.path.startsWith('node:') || args.pluginData?.inner) return undefined;
      const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { inner: true } });
      if (found.errors.length) return { errors: found.errors };
      if (found.external) return { path: args.path, external: true };
      return { path: relative(OUT, found.path).split('\\').join('/'), external: true };
    });
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      let source = await readFile(args.path, 'utf8');
      if (source.includes('import.meta.url') || source.includes('import.meta.dirname')) {
        const file = relative(OUT, args.path).split('\\').join('/');
        const dir = relative(OUT, dirname(args.path)).split('\\').join('/') || '.';
        source = source
          .replaceAll('import.meta.url', `new URL(${JSON.stringify(file)}, import.meta.url).href`)
          .replaceAll('import.meta.dirname', `decodeURIComponent(new URL(${JSON.stringify(`${dir}/`)}, import.meta.url).pathname).replace(/\\/$/, '')`);
      }
      return { contents: source, loader: 'ts' };
    });
  },
};

/**
 * Builds into a fresh folder beside dist/ (the same depth, so every relative path holds) and swaps it in:
 * a process reading dist/ meanwhile (a CLI, a test, another build) sees the old build or the new one,
 * never half of one; for the instant between the two renames it sees none and runs the TypeScript.
 */
export async function buildAll({ quiet = false } = {}) {
  const started = performance.now();
  const startedAt = Date.now();
  const tag = randomBytes(4).toString('hex');
  const fresh = join(ROOT, `.dist-${tag}`);
  const result = await build({
    entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, entry]) => [name, join(ROOT, entry)])),
    outdir: fresh,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Split at dynamic imports (the CLIs load their commands only after --help), with the shared chunks in
    // dist/ itself: every output sits in the one folder the external paths above are relative to.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    // as node resolves a bare name: exports, else "main" (never the bundler-only "module")
    mainFields: ['main'],
    sourcemap: 'linked',
    logLevel: quiet ? 'error' : 'warning',
    plugins: [ownPlace],
    metafile: true,
  });
  // what the bundles were built from, and when, so bin/ can tell a build older than a source (dist.mjs)
  const inputs = Object.keys(result.metafile.inputs).filter((input) => !input.includes('node_modules'));
  await writeFile(join(fresh, 'built.json'), JSON.stringify({ at: startedAt, inputs: inputs.map((input) => relative(ROOT, resolve(ROOT, input))) }));
  const old = join(ROOT, `.dist-old-${tag}`);
  await rename(OUT, old).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
  // another build may have put its dist/ in place meanwhile: it is as good as this one
  await rename(fresh, OUT).catch((err) => {
    if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
  });
  await Promise.all([rm(old, { recursive: true, force: true }), rm(fresh, { recursive: true, force: true })]);
  if (!quiet) process.stderr.write(`sdq: built dist/ in ${Math.round(performance.now() - started)} ms\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) await buildAll({ quiet: process.argv.includes('--quiet') });
