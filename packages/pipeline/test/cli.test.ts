import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { readPngText } from '../src/image';

const run = promisify(execFile);
const bin = 'packages/pipeline/bin/sdq-generate.js';
const dir = mkdtempSync(join(tmpdir(), 'sdq-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sdq-generate', () => {
  it('generates the issue example with a progress bar and the seed on stdout', async () => {
    const out = join(dir, 'out.png');
    const { stdout, stderr } = await run('node', [bin, 'a red circle on a blue background', '--model', 'models/tiny-sd', '--steps', '25', '--seed', '42', '--sampler', 'K_EULER', '-o', out]);
    expect(stdout.trim()).toBe(`${out} seed=42`);
    expect(stderr).toContain('25/25');
    expect(stderr).toMatch(/\[#+\]/);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([128, 128]);
    const { readFileSync } = await import('node:fs');
    expect(readPngText(readFileSync(out)).parameters).toContain('Steps: 25, Sampler: Euler, CFG scale: 7, Seed: 42');
  });

  it('takes an SDXL folder: --model models/tiny-sdxl', async () => {
    const out = join(dir, 'sdxl.png');
    const { stdout } = await run('node', [bin, 'a red circle on a blue background', '--model', 'models/tiny-sdxl', '--steps', '20', '--seed', '42', '-o', out]);
    expect(stdout.trim()).toBe(`${out} seed=42`);
    const { readFileSync } = await import('node:fs');
    expect(readPngText(readFileSync(out)).parameters).toMatch(/Steps: 20, .*Seed: 42, Size: 128x128, Model: tiny-sdxl/);
  });

  it('takes an SD3 folder, with the family\'s 28 steps by default: --model models/tiny-sd3', async () => {
    const out = join(dir, 'sd3.png');
    const { stdout, stderr } = await run('node', [bin, 'a red circle on a blue background', '--model', 'models/tiny-sd3', '--seed', '42', '-o', out]);
    expect(stdout.trim()).toBe(`${out} seed=42`);
    expect(stderr).toContain('28/28');
    const { readFileSync } = await import('node:fs');
    expect(readPngText(readFileSync(out)).parameters).toMatch(/Steps: 28, Sampler: Euler, .*Model: tiny-sd3/);
  });

  it('runs image-to-image, masking and upscaling from files', async () => {
    const init = join(dir, 'init.png');
    await run('node', [bin, 'a red circle on a blue background', '--steps', '10', '--seed', '1', '-o', init]);
    const mask = join(dir, 'mask.png');
    await sharp({ create: { width: 128, height: 128, channels: 3, background: '#000' } })
      .composite([{ input: { create: { width: 64, height: 128, channels: 3, background: '#fff' } }, left: 0, top: 0 }])
      .png()
      .toFile(mask);
    const outs = {
      img2img: [bin, 'a yellow circle on a blue background', '--init', init, '--strength', '0.5', '--steps', '10', '-o', join(dir, 'i2i.png')],
      mask: [bin, 'a green square on a blue background', '--init', init, '--mask', mask, '--steps', '10', '-o', join(dir, 'mask-out.png')],
      upscale: [bin, '--upscale', '--init', init, '-o', join(dir, 'up.webp')],
    };
    for (const args of Object.values(outs)) await run('node', args);
    expect((await sharp(join(dir, 'up.webp')).metadata()).width).toBe(256);
    expect((await sharp(join(dir, 'up.webp')).metadata()).format).toBe('webp');
    expect((await sharp(join(dir, 'i2i.png')).metadata()).width).toBe(128);
    expect((await sharp(join(dir, 'mask-out.png')).metadata()).width).toBe(128);
  });

  it('exits 2 with the error code and the valid samplers for an unknown sampler', async () => {
    const err = await run('node', [bin, 'a red circle', '--sampler', 'K_FOO', '-o', join(dir, 'x.png')]).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/error \(invalid_sampler\): .*K_FOO.*K_EULER/);
  });

  it('says a mistake in one line with its code and a hint, never a stack trace', async () => {
    const cases: [string[], RegExp][] = [
      [['--stpes', '10', 'x'], /^sdq-generate: error \(unknown_option\): --stpes is not an option \(did you mean --steps\?\); see sdq-generate --help$/],
      [['a red circle', '--init', join(dir, 'missing.png')], /^sdq-generate: error \(file_not_found\): --init: no such file ".*missing\.png" \(from .*\); see sdq-generate --help$/],
      [['a red circle', '--steps', 'ten'], /^sdq-generate: error \(invalid_option\): --steps must be a number \(got "ten"\); see sdq-generate --help$/],
      [['a red circle', '--model', join(dir, 'no-model')], /^sdq-generate: error \(model_not_found\): --model: no such folder /],
    ];
    for (const [args, line] of cases) {
      const err = await run('node', [bin, ...args, '-o', join(dir, 'never.png')]).catch((e) => e);
      expect(err.code, args.join(' ')).toBe(2);
      expect(err.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(err.stderr.trim()).toMatch(line);
      expect(err.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('finds its default model from any folder', async () => {
    const out = join(dir, 'anywhere.png');
    const { stdout } = await run('node', [join(process.cwd(), bin), 'a red circle on a blue background', '--steps', '10', '--seed', '3', '-o', out], { cwd: tmpdir() });
    expect(stdout.trim()).toBe(`${out} seed=3`);
    expect((await sharp(out).metadata()).width).toBe(128);
  });
});
