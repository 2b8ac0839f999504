/**
 * `npx sdq models pull --lora` / `--embedding`: one .safetensors file of a repo on a Hub stand-in into
 * LORA_DIR / EMBEDDINGS_DIR, verified against its sha256 and checked to parse before it is placed; a
 * pickle file is refused without a byte fetched, a file that is no LoRA is not left in the folder.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubStandIn, startHubStandIn } from '../../../packages/hub/test/support/hub-stand-in';

const run = promisify(execFile);
const REPO = 'sdq-test/adapters';
const ADAPTERS = join(import.meta.dirname, '../../../packages/pipeline/test/fixtures/adapters');
let hub: HubStandIn;
const modelsDir = mkdtempSync(join(tmpdir(), 'sdq-cli-adapters-'));

beforeAll(async () => {
  hub = await startHubStandIn({
    repo: REPO,
    dir: ADAPTERS,
    extra: { 'old/green.ckpt': Buffer.from('pickle'), 'notes/not-a-lora.safetensors': readFileSync(join(ADAPTERS, 'crimson.safetensors')) },
  });
});
afterAll(async () => {
  await hub?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

const sdq = (args: string[]) =>
  run(process.execPath, ['apps/api/bin/sdq.js', ...args], { env: { PATH: process.env.PATH, MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );

describe('npx sdq models pull --lora / --embedding', () => {
  it('puts a LoRA into LORA_DIR and an embedding into EMBEDDINGS_DIR, byte for byte, under the name asked', async () => {
    const lora = await sdq(['models', 'pull', '--lora', REPO, 'green-objects.safetensors', '--name', 'green']);
    expect(lora.code, lora.stderr).toBe(0);
    expect(lora.stdout).toMatch(/^pulled sdq-test\/adapters: green-objects.safetensors \([0-9a-f]{12}\) into .*loras\/green.safetensors, [\d.]+ MB, checked; requests use it as <lora:green:1>/);
    expect(readFileSync(join(modelsDir, 'loras', 'green.safetensors')).equals(readFileSync(join(ADAPTERS, 'green-objects.safetensors')))).toBe(true);
    const embedding = await sdq(['models', 'pull', '--embedding', `${REPO}@main`, 'crimson-diffusers.safetensors', '--name', 'crimson', '--json']);
    expect(embedding.code, embedding.stderr).toBe(0);
    expect(JSON.parse(embedding.stdout)).toMatchObject({ name: 'crimson', commit: hub.commit });
    expect(existsSync(join(modelsDir, 'embeddings', 'crimson.safetensors'))).toBe(true);
    const again = await sdq(['models', 'pull', '--lora', REPO, 'green-objects.safetensors', '--name', 'green']);
    expect(again.stderr).toMatch(/exists already/);
  });

  it('refuses a pickle file unfetched, and a file that is not a LoRA without leaving it behind', async () => {
    const pickle = await sdq(['models', 'pull', '--lora', REPO, 'old/green.ckpt']);
    expect(pickle.code).toBe(1);
    expect(pickle.stderr).toMatch(/only .safetensors files are pulled .*pickle/);
    expect(hub.requests.filter((r) => r.path.includes('green.ckpt'))).toHaveLength(0);
    const wrong = await sdq(['models', 'pull', '--lora', REPO, 'notes/not-a-lora.safetensors']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/not-a-lora.safetensors is not usable: /);
    expect(readdirSync(join(modelsDir, 'loras')).filter((f) => f.includes('not-a-lora'))).toEqual([]);
  });
});
