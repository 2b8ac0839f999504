/**
 * Every command the README shows runs as written: each `npm run` names a script of the package it
 * runs in, `npm start -- <names>` names the launcher's processes, each `npx sdq ...` is a command of
 * the operator CLI and each `npx sdq-generate` option one of its options (from their own --help), each
 * `npx tsx <file>` names a file that exists. The Quick start itself runs in quick-start.test.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../e2e/support';

const run = promisify(execFile);
// the README and every page under docs/ (the benchmark log aside: it records what ran): a command is
// checked wherever the text has moved
const readme = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md') && f !== 'BENCHMARKS.md').map((f) => `docs/${f}`)].map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');

/** Shell lines of the README: its sh/bash blocks (continuations joined, comments dropped) and inline `npm`/`npx` spans. */
function commands(): string[] {
  const lines: string[] = [];
  for (const [, body] of readme.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)) {
    for (const line of body.replace(/\\\n\s*/g, ' ').split('\n')) {
      const code = line.replace(/(^|\s)#.*$/, '').trim();
      if (code) lines.push(code);
    }
  }
  for (const [, span] of readme.matchAll(/`((?:npm|npx) [^`]+)`/g)) lines.push(span);
  // a command after an environment assignment or inside $( ... ) is a command too
  return lines.flatMap((l) => [l, ...[...l.matchAll(/\$\(([^)]*)\)/g)].map((m) => m[1])]).map((l) => l.replace(/^(?:[A-Z_]+=\S+\s+)+/, ''));
}

const pkg = (dir: string) => JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string; scripts?: Record<string, string> };
const workspaces = new Map(['apps/api', 'apps/worker', 'apps/webhooks', ...['contracts', 'credits', 'jobs', 'pipeline', 'storage', 'webhooks'].map((p) => `packages/${p}`)].filter((d) => existsSync(join(ROOT, d, 'package.json'))).map((d) => [pkg(d).name, pkg(d)]));

describe('README commands', () => {
  const all = commands();

  it('finds the commands it checks', () => {
    expect(all.filter((c) => c.startsWith('npm run ')).length).toBeGreaterThan(10);
    expect(all.filter((c) => c.startsWith('npx sdq ')).length).toBeGreaterThan(5);
  });

  it('every npm run names a script of its package', () => {
    const root = pkg('.');
    for (const command of all.filter((c) => c.startsWith('npm run '))) {
      const [, script, workspace] = /^npm run (\S+)(?:.*?(?:-w|--workspace)[ =](\S+))?/.exec(command)!;
      const scripts = workspace ? workspaces.get(workspace)?.scripts : root.scripts;
      expect(scripts, `${command}: no workspace ${workspace}`).toBeDefined();
      expect(Object.keys(scripts!), command).toContain(script);
    }
  });

  it('npm start -- names only processes the launcher runs', () => {
    const launcher = readFileSync(join(ROOT, 'scripts/start.ts'), 'utf8');
    const processes = [...(/const PROCESSES[^{]*\{([^}]*)\}/.exec(launcher)?.[1] ?? '').matchAll(/^\s*(\w+):/gm)].map((m) => m[1]);
    expect(processes).toEqual(['api', 'worker', 'webhooks']);
    for (const command of all.filter((c) => c.startsWith('npm start -- '))) {
      for (const name of command.slice('npm start -- '.length).split(/\s+/)) expect(processes, command).toContain(name);
    }
  });

  it("every npx sdq is one of the operator CLI's commands, with its options", async () => {
    const { stdout: help } = await run(process.execPath, [join(ROOT, 'apps/api/bin/sdq.js'), '--help'], { cwd: ROOT });
    const known = [...help.matchAll(/^ {2}sdq ([a-z]+ [a-z]+)/gm)].map((m) => m[1]);
    expect(known.length).toBeGreaterThan(5);
    const options = new Set([...help.matchAll(/--([a-z-]+)/g)].map((m) => m[1]));
    for (const command of all.filter((c) => /^npx sdq /.test(c))) {
      const words = command.split(/\s+/).slice(2);
      if (words[0] === '--help') continue;
      expect(known, command).toContain(`${words[0]} ${words[1]}`);
      for (const option of command.matchAll(/\s--([a-z-]+)/g)) expect([...options], command).toContain(option[1]);
    }
  });

  it('every npx sdq-generate option is one of its options', async () => {
    const { stdout: help } = await run(process.execPath, [join(ROOT, 'packages/pipeline/bin/sdq-generate.js'), '--help'], { cwd: ROOT });
    const options = new Set([...help.matchAll(/--([a-z-]+)/g)].map((m) => m[1]));
    const generate = all.filter((c) => c.startsWith('npx sdq-generate'));
    expect(generate.length).toBeGreaterThan(0);
    for (const command of generate) for (const option of command.matchAll(/\s--([a-z-]+)/g)) expect([...options], command).toContain(option[1]);
  });

  it('every npx tsx names a file that exists', () => {
    for (const command of all.filter((c) => c.startsWith('npx tsx '))) {
      const file = command.split(/\s+/)[2];
      expect(existsSync(join(ROOT, file)), command).toBe(true);
    }
  });
});
