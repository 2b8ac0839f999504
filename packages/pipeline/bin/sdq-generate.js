#!/usr/bin/env node
// Runs the TypeScript CLI directly: tsx compiles on the fly, so `npm ci` alone is enough.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
