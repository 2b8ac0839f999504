/**
 * The README's Quick start, run as a person pastes it: the block between its quick-start markers, in
 * bash, in the repository folder, against a running service. Only two things are changed: the service's
 * port (the block says localhost:3000) and where first.png is written (a temporary folder, not the tree).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balanceOf, bluish, redish, rgbOf, ROOT, type Service, type Stack, startStack } from '../e2e/support';

const run = promisify(execFile);
let stack: Stack;
let service: Service;
const dir = mkdtempSync(join(tmpdir(), 'sdq-quick-start-'));

beforeAll(async () => {
  stack = await startStack({ workerEnv: { ENGINES: 'tiny-sd' } });
  service = stack.service;
});
afterAll(async () => {
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The README block between `<!-- name:begin -->` and `<!-- name:end -->`, without its fence. */
export function readmeBlock(name: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = new RegExp(`<!-- ${name}:begin -->\\n\`\`\`(?:sh|bash)\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(readme);
  if (!section) throw new Error(`README has no ${name} block`);
  return section[1];
}

describe("the README's Quick start", () => {
  it('creates a key with npx sdq, draws a first image with curl, and names the studio', async () => {
    const block = readmeBlock('quick-start');
    expect(block).toContain('http://localhost:3000');
    const script = block.replaceAll('http://localhost:3000', service.server.deps.config.publicUrl).replace('-o first.png', `-o ${join(dir, 'first.png')}`);
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL: stack.redis.url, QUEUE_PREFIX: stack.redis.prefix },
      timeout: 120_000,
    });
    // the studio line names the key it made, and the key works
    expect(stdout).toContain(`open ${service.server.deps.config.publicUrl}/ and paste the API key sk-`);
    const key = /paste the API key (sk-\S+)/.exec(stdout)?.[1];
    expect(key, stdout).toBeDefined();
    expect(await balanceOf(service, key!)).toBeLessThan(10);
    const image = await rgbOf(readFileSync(join(dir, 'first.png')));
    expect([image.width, image.height]).toEqual([128, 128]);
    expect(image.at(64, 64), 'centre').toSatisfy(redish);
    expect(image.at(4, 4), 'corner').toSatisfy(bluish);
    // the studio it points at is there
    expect((await fetch(`${service.server.deps.config.publicUrl}/`)).headers.get('content-type')).toMatch(/^text\/html/);
  });
});
