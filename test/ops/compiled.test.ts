/**
 * sdq compiled once (scripts/build.mjs): `npm start` runs dist/, as the Docker images do, and the CLIs
 * run their bundle while it is current. The bundles must behave as the TypeScript does: the compiled
 * launcher's API, worker and delivery process draw an image and charge it (the credit scripts, read from
 * beside their modules, load), and the compiled CLI makes an account.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, waitFor } from '../e2e/support';
import { freePort, startTestRedis, type TestRedis } from '../support/redis';

const run = promisify(execFile);
const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer().once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
let redis: TestRedis;
let launcher: ChildProcess | undefined;

beforeAll(async () => {
  redis = await startTestRedis();
  // what `npm start` does first; `npm ci` did it too (the prepare script)
  await run(process.execPath, ['scripts/build.mjs', '--quiet'], { cwd: ROOT });
});
afterAll(async () => {
  if (launcher && launcher.exitCode === null && launcher.signalCode === null) {
    launcher.kill('SIGTERM');
    await new Promise((r) => launcher!.once('exit', r));
  }
  await redis?.close();
});

describe('compiled once', () => {
  it('builds a bundle for every entry, and the CLIs run it while it is current', async () => {
    const entries = JSON.parse(readFileSync(join(ROOT, 'scripts/entries.json'), 'utf8')) as Record<string, string>;
    for (const [name, source] of Object.entries(entries)) {
      expect(existsSync(join(ROOT, source)), source).toBe(true);
      expect(existsSync(join(ROOT, 'dist', `${name}.js`)), name).toBe(true);
    }
    const { currentBundle } = (await import(join(ROOT, 'scripts/dist.mjs'))) as { currentBundle(name: string): string | undefined };
    expect(currentBundle('sdq')).toBe(join(ROOT, 'dist', 'sdq.js'));
    expect(currentBundle('no-such-entry')).toBeUndefined();
    const env = { ...process.env, REDIS_URL: redis.url, QUEUE_PREFIX: `${redis.prefix}cli` };
    const { stdout } = await run(process.execPath, ['apps/api/bin/sdq.js', 'accounts', 'create', '--name', 'compiled'], { cwd: ROOT, env });
    expect(stdout).toMatch(/sk-[A-Za-z0-9_-]{20,}/);
    const help = await run(process.execPath, ['packages/pipeline/bin/sdq-generate.js', '--help'], { cwd: ROOT });
    expect(help.stdout).toContain('--steps');
  });

  it('npm start runs the compiled processes: an image sent the moment it says ready: is drawn and charged', async () => {
    let port = await freePort();
    while (!((await portFree(port + 1)) && (await portFree(port + 2)))) port = await freePort();
    const prefix = `${redis.prefix}start`;
    const env = { ...process.env, REDIS_URL: redis.url, QUEUE_PREFIX: prefix, PORT: String(port), ENGINES: 'tiny-sd', LOG_LEVEL: 'warn' };
    launcher = spawn(process.execPath, ['scripts/run.mjs', 'start'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    launcher.stderr!.on('data', (chunk) => (log += String(chunk)));
    await waitFor(async () => log.includes('sdq: ready: ') || (launcher!.exitCode !== null ? Promise.reject(new Error(log)) : false), 'the compiled service to be ready', 90_000);
    // each process is its bundle, not TypeScript through tsx
    const commands = [...log.matchAll(/(api|worker|webhooks) \(pid (\d+)\)/g)].map((m) => readFileSync(`/proc/${m[2]}/cmdline`, 'utf8').split('\0').join(' '));
    expect(commands).toHaveLength(3);
    for (const command of commands) expect(command).toMatch(/dist\/(api|worker|webhooks)\.js/);
    // ready: means the worker serves too, so what follows needs no wait of its own
    expect(log.indexOf('sdq: ready: ')).toBeGreaterThan(-1);

    const { stdout } = await run(process.execPath, ['apps/api/bin/sdq.js', 'accounts', 'create', '--name', 'drawer'], { cwd: ROOT, env: { ...env, LOG_LEVEL: 'silent' } });
    const key = /sk-[A-Za-z0-9_-]+/.exec(stdout)![0];
    const api = `http://127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${key}` };
    const before = ((await (await fetch(`${api}/v1/user/balance`, { headers: auth })).json()) as { credits: number }).credits;
    const res = await fetch(`${api}/v1/generation/tiny-sd/text-to-image`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', accept: 'image/png' },
      body: JSON.stringify({ text_prompts: [{ text: 'a red circle on a blue background' }], steps: 10, seed: 1 }),
    });
    expect(res.status, await res.clone().text().catch(() => '')).toBe(200);
    expect(await sharp(Buffer.from(await res.arrayBuffer())).metadata()).toMatchObject({ width: 128, height: 128, format: 'png' });
    const after = ((await (await fetch(`${api}/v1/user/balance`, { headers: auth })).json()) as { credits: number }).credits;
    expect(after).toBeLessThan(before);
  });
});
