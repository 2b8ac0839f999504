/**
 * `npx sdq models pull` and `models list`, run as an operator runs them (the bin, a real process) against
 * a Hub stand-in serving models/tiny-sd: plain progress lines when not on a terminal, the engine on disk
 * with its origin, and one line saying what to do when a pull cannot be done.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubStandIn, startHubStandIn } from '../../../packages/hub/test/support/hub-stand-in';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

const run = promisify(execFile);
const REPO = 'sdq-test/tiny-sd-onnx';
let hub: HubStandIn;
let redis: TestRedis;
const modelsDir = mkdtempSync(join(tmpdir(), 'sdq-cli-models-'));

beforeAll(async () => {
  hub = await startHubStandIn({ repo: REPO, dir: 'models/tiny-sd' });
  redis = await startTestRedis();
});
afterAll(async () => {
  await hub?.close();
  await redis?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

const sdq = (args: string[]) =>
  run(process.execPath, ['apps/api/bin/sdq.js', ...args], { env: { PATH: process.env.PATH, MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url, REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );

describe('npx sdq models', () => {
  it('pulls a repo into MODELS_DIR with plain progress lines, then lists it with its origin', async () => {
    const pulled = await sdq(['models', 'pull', `${REPO}@main`, '--name', 'pulled-sd']);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toMatch(new RegExp(`^pulled ${REPO}@${hub.commit.slice(0, 12)} \\(main\\) into .*pulled-sd as engine pulled-sd: \\d+ files, [\\d.]+ MB, each checked`));
    expect(pulled.stderr).toMatch(/^sdq: pulling pulled-sd: .* \([\d.]+ MB of [\d.]+ MB\)$/m);
    expect(pulled.stderr).toContain('unet/model.onnx');
    const list = await sdq(['models', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const { engines } = JSON.parse(list.stdout) as { engines: { id: string; family: string; state: string | null; workers: number | null; pulled_from: string | null; bytes: number }[] };
    expect(engines).toEqual([expect.objectContaining({ id: 'pulled-sd', family: 'stable-diffusion', state: 'unserved', workers: 0, loaded_workers: 0, pulled_from: `${REPO}@${hub.commit.slice(0, 12)}` })]);
    expect(engines[0].bytes).toBeGreaterThan(1_000_000);
    const human = await sdq(['models', 'list']);
    expect(human.stdout).toMatch(/^pulled-sd\tstable-diffusion\tunserved \(0 workers, 0 loaded\)\t[\d.]+ MB\tsdq-test\/tiny-sd-onnx@/m);
    const removed = await sdq(['models', 'rm', 'pulled-sd']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toMatch(/^removed .*pulled-sd: the API drops engine pulled-sd/);
    expect(JSON.parse((await sdq(['models', 'list', '--json'])).stdout).engines).toEqual([]);
    expect((await sdq(['models', 'rm', 'pulled-sd'])).stderr).toMatch(/^sdq: error \(not_found\): no engine pulled-sd under /);
  });

  it('says what to do when a pull cannot be done, and refuses bad input as a usage error', async () => {
    const revision = await sdq(['models', 'pull', `${REPO}@v9`, '--name', 'other']);
    expect(revision.code).toBe(1);
    expect(revision.stderr.trim()).toMatch(/^sdq: error \(not_found\): sdq-test\/tiny-sd-onnx has no revision v9 .*check the revision/);
    expect(revision.stderr).not.toContain('SDQ_DEBUG');
    const bad = await sdq(['models', 'pull', '../../etc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^sdq: error \(usage\): repo: must be owner\/name/);
    expect(hub.requests.filter((r) => r.path.includes('etc'))).toHaveLength(0);
  });
});
