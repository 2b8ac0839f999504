/**
 * Pulls against a Hub stand-in serving models/tiny-sd as a repo (test/support/hub-stand-in.ts): the
 * folder arrives whole and described as an engine, pinned and recorded; only what a pipeline needs is
 * fetched; a broken download resumes with Range, within a pull and in the next one; a corrupted file,
 * a gated repo, an unknown revision and bad input are refused with one message saying what to do.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeEngine } from '@sdq/pipeline/engines';
import { PULL_RECORD, type PullError, pullModel, type PullRecord } from '../src';
import { type HubStandIn, startHubStandIn } from './support/hub-stand-in';

const REPO = 'sdq-test/tiny-sd-onnx';
const SOURCE = 'models/tiny-sd';
let hub: HubStandIn;
let modelsDir: string;

beforeAll(async () => {
  hub = await startHubStandIn({
    repo: REPO,
    dir: SOURCE,
    pageSize: 5,
    // what a repo carries beside the ONNX pipeline: none of it may be fetched
    extra: { 'unet/diffusion_pytorch_model.safetensors': Buffer.alloc(10_000, 1), 'README.md': Buffer.from('# tiny'), 'sample.png': Buffer.alloc(5000, 2), 'text_encoder/pytorch_model.bin': Buffer.alloc(8000, 3) },
  });
});
afterAll(async () => {
  await hub?.close();
});
afterEach(() => {
  for (const key of Object.keys(hub.faults)) delete hub.faults[key as keyof typeof hub.faults];
  hub.requests.length = 0;
  hub.sent.clear();
  if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
});
const fresh = () => (modelsDir = mkdtempSync(join(tmpdir(), 'sdq-pull-')));
const pull = (req: Partial<Parameters<typeof pullModel>[0]> = {}, opts: Partial<Parameters<typeof pullModel>[1]> = {}) => pullModel({ repo: REPO, ...req }, { modelsDir, endpoint: hub.url, ...opts });
const refused = async (p: Promise<unknown>): Promise<PullError> => {
  const err = (await p.catch((e: unknown) => e)) as PullError;
  expect(err).toBeInstanceOf(Error);
  return err;
};

function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full, base) : [full.slice(base.length + 1)];
  });
}

describe('pulling a diffusers ONNX repo', () => {
  it('arrives whole, pinned to its commit and recorded, described as an engine; nothing else is fetched', async () => {
    fresh();
    const progress: number[] = [];
    const { engine, dir, record } = await pull({ name: 'pulled-sd' }, { onProgress: (p) => progress.push(p.bytesDone) });
    expect(engine).toBe('pulled-sd');
    const source = filesUnder(SOURCE).sort();
    expect(filesUnder(dir).sort()).toEqual([...source.filter((f) => /\.(onnx|json|txt|data|pb|model)$/.test(f)), PULL_RECORD].sort());
    // byte for byte, and the record's sha256 are the files'
    for (const f of record.files) {
      const bytes = readFileSync(join(dir, f.path));
      expect(bytes.equals(readFileSync(join(SOURCE, f.path))), f.path).toBe(true);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(f.sha256);
    }
    const written = JSON.parse(readFileSync(join(dir, PULL_RECORD), 'utf8')) as PullRecord;
    expect(written).toMatchObject({ repo: REPO, revision: 'main', commit: hub.commit, subfolder: '' });
    // only what a pipeline reads; the tree was read page by page (5 a page)
    const fetched = hub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path);
    for (const never of ['safetensors', 'README.md', 'sample.png', 'pytorch_model.bin']) expect(fetched.join()).not.toContain(never);
    expect(hub.requests.filter((r) => r.path.includes('/tree/')).length).toBeGreaterThan(2);
    // every file fetched at the commit, not at "main"
    expect(fetched.every((p) => p.includes(`/resolve/${hub.commit}/`))).toBe(true);
    expect(progress.at(-1)).toBe(record.files.reduce((s, f) => s + f.size, 0));
    // the API's description reads it as the folder it was pulled from
    expect(describeEngine(dir, engine)).toMatchObject({ kind: 'generation', family: 'stable-diffusion', nativeWidth: 128 });
    expect(readdirSync(modelsDir).sort()).toEqual(['pulled-sd']);
  });

  it('resumes a download whose connection broke, with Range from where it stopped, within the same pull', async () => {
    fresh();
    const unet = 'unet/model.onnx';
    const size = statSync(join(SOURCE, unet)).size;
    // a third of the file: the second try, from about there, is longer than that again and is cut too
    hub.faults.cut = { path: unet, after: Math.floor(size / 3), times: 2 };
    const { dir } = await pull();
    expect(readFileSync(join(dir, unet)).equals(readFileSync(join(SOURCE, unet)))).toBe(true);
    // the graph is LFS: each try asks /resolve, which redirects to the CDN path, Range and all
    // (a connection that breaks can lose the last bytes it carried: each try starts where the file on disk ends)
    const starts = hub.requests.filter((r) => r.range && r.path.startsWith('/cdn/')).map((r) => Number(/^bytes=(\d+)-$/.exec(r.range!)![1]));
    expect(starts).toHaveLength(2);
    expect(starts[0]).toBeGreaterThan(size / 4);
    expect(starts[0]).toBeLessThanOrEqual(Math.floor(size / 2));
    expect(starts[1]).toBeGreaterThan(starts[0]);
    // about each byte once, never the file again from the start
    expect(hub.sent.get(unet)).toBeLessThan(size * 1.1);
  });

  it('resumes in the next pull what a failed one left, and refuses a second pull of the same engine meanwhile', async () => {
    fresh();
    const unet = 'unet/model.onnx';
    const size = statSync(join(SOURCE, unet)).size;
    // cuts well into the body (a short body cut at once can reach the client as nothing at all)
    hub.faults.cut = { path: unet, after: 300_000, times: 5 };
    const failed = await refused(pull());
    expect(failed.message).toMatch(/the connection broke 5 times .*pull again: it resumes where it stopped/);
    expect(readdirSync(modelsDir)).not.toContain('tiny-sd-onnx');
    hub.requests.length = 0;
    // two at once: one runs, the other is refused
    const [a, b] = await Promise.allSettled([pull(), pull()]);
    const outcomes = [a.status, b.status].sort();
    expect(outcomes).toEqual(['fulfilled', 'rejected']);
    const busy = (a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason) as PullError;
    expect(busy.code).toBe('busy');
    const start = Number(/^bytes=(\d+)-$/.exec(hub.requests.find((r) => r.range && r.path.startsWith('/cdn/'))?.range ?? '')?.[1]);
    // what the five broken tries left on disk: more than one try's worth, at most all five
    expect(start).toBeGreaterThan(300_000);
    expect(start).toBeLessThanOrEqual(5 * 300_000);
    expect(readFileSync(join(modelsDir, 'tiny-sd-onnx', unet)).equals(readFileSync(join(SOURCE, unet)))).toBe(true);
    expect(size).toBeGreaterThan(5 * 300_000);
  });

  it('refuses a file that does not match its sha256: nothing becomes an engine, and the bad file is gone', async () => {
    fresh();
    hub.faults.corrupt = 'unet/model.onnx';
    const err = await refused(pull());
    expect(err.code).toBe('verify_failed');
    expect(err.message).toMatch(/unet\/model\.onnx does not match the repo .*sha256 .*pull again/);
    expect(existsSync(join(modelsDir, 'tiny-sd-onnx'))).toBe(false);
    expect(existsSync(join(modelsDir, '.pull-tiny-sd-onnx', 'unet', 'model.onnx'))).toBe(false);
    // a small (non-LFS) file is checked against its git blob id
    hub.faults.corrupt = 'model_index.json';
    const small = await refused(pull());
    expect(small.message).toMatch(/model_index\.json does not match the repo .*git blob id/);
  });

  it('names what to do for a gated repo, an unknown repo or revision, a folder without a pipeline', async () => {
    fresh();
    hub.faults.token = 'hf_secret_token';
    const gated = await refused(pull());
    expect(gated.code).toBe('unauthorized');
    expect(gated.message).toMatch(/gated or private .*set HF_TOKEN/);
    expect((await pull({}, { token: 'hf_secret_token' })).engine).toBe('tiny-sd-onnx');
    delete hub.faults.token;
    expect((await refused(pull({ revision: 'v9', name: 'x1' }))).message).toMatch(/has no revision v9 .*check the revision/);
    expect((await refused(pull({ repo: 'sdq-test/nothing-here', name: 'x2' }))).message).toMatch(/no repo sdq-test\/nothing-here .*HF_TOKEN if it is private/);
    expect((await refused(pull({ subfolder: 'unet', name: 'x3' }))).code).toBe('not_a_pipeline');
    expect((await refused(pull({ name: 'tiny-sd-onnx' }))).code).toBe('exists');
  });

  it('refuses bad input before any request', async () => {
    fresh();
    for (const [req, field] of [
      [{ repo: 'no-slash' }, 'repo'],
      [{ repo: 'a/b/c' }, 'repo'],
      [{ repo: '../etc' }, 'repo'],
      [{ revision: '../../x' }, 'revision'],
      [{ subfolder: '../up' }, 'subfolder'],
      [{ subfolder: '/abs' }, 'subfolder'],
      [{ name: 'bad name' }, 'name'],
      [{ name: '..' }, 'name'],
    ] as const) {
      const err = await refused(pull(req));
      expect(err.message.startsWith(`${field}: `), `${JSON.stringify(req)}: ${err.message}`).toBe(true);
    }
    expect(hub.requests).toHaveLength(0);
  });
});
