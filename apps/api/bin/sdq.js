#!/usr/bin/env node
// The operator CLI: registers tsx so the TypeScript entry runs without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
