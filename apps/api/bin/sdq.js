#!/usr/bin/env node
// The operator CLI: the compiled dist/sdq.js (built by `npm ci`), or the TypeScript through tsx when a
// source is newer than that build (scripts/dist.mjs).
import { runEntry } from '../../../scripts/dist.mjs';

await runEntry('sdq', new URL('../src/cli.ts', import.meta.url).href);
