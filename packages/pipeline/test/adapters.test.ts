/**
 * The LoRA and embedding folders as a listing reads them: files by name, what each changes, and every
 * file not taken with why (pickle, a name no request can use, a truncated file, an embedding among the
 * LoRAs). A LoRA is listed from its header alone.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listEmbeddings, listLoras } from '../src/adapters';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');
const root = mkdtempSync(join(tmpdir(), 'sdq-adapters-'));
const loras = join(root, 'loras');
const embeddings = join(root, 'embeddings');

beforeAll(() => {
  mkdirSync(loras);
  mkdirSync(embeddings);
  copyFileSync(join(ADAPTERS, 'green-objects.safetensors'), join(loras, 'green-objects.safetensors'));
  copyFileSync(join(ADAPTERS, 'green-objects-peft.safetensors'), join(loras, 'green peft.safetensors'));
  copyFileSync(join(ADAPTERS, 'crimson.safetensors'), join(loras, 'crimson.safetensors'));
  writeFileSync(join(loras, 'old.ckpt'), 'PK\x03\x04 a pickle would run code');
  const whole = readFileSync(join(ADAPTERS, 'green-objects.safetensors'));
  writeFileSync(join(loras, 'cut.safetensors'), whole.subarray(0, whole.length >> 1));
  writeFileSync(join(loras, '.hidden.safetensors'), whole);
  copyFileSync(join(ADAPTERS, 'crimson.safetensors'), join(embeddings, 'crimson.safetensors'));
  copyFileSync(join(ADAPTERS, 'crimson-diffusers.safetensors'), join(embeddings, 'scarlet.safetensors'));
  writeFileSync(join(embeddings, 'big.safetensors'), Buffer.alloc(17 * 2 ** 20));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('adapter folders', () => {
  it('lists LoRAs by file stem with the graphs they change, and every file not taken with why', () => {
    const { files, skipped } = listLoras(loras);
    expect([...files.keys()]).toEqual(['green peft', 'green-objects']);
    expect(files.get('green-objects')).toMatchObject({ bytes: 272712, components: { unet: 70, text_encoder: 18 } });
    expect(files.get('green-objects')!.modules).toHaveLength(88);
    const why = Object.fromEntries(skipped.map((s) => [s.file, s.reason]));
    expect(Object.keys(why).sort()).toEqual(['crimson.safetensors', 'cut.safetensors', 'old.ckpt']);
    expect(why['old.ckpt']).toMatch(/pickle file \(it runs code when loaded\)/);
    expect(why['cut.safetensors']).toMatch(/outside the \d+ bytes of data/);
    expect(why['crimson.safetensors']).toMatch(/no LoRA keys/);
  });

  it('lists embeddings by their trigger word (the file stem), refusing files too large to be one', () => {
    const { files, skipped } = listEmbeddings(embeddings);
    expect([...files.keys()]).toEqual(['crimson', 'scarlet']);
    expect(files.get('crimson')!.embedding.vectors).toMatchObject({ count: 1, dim: 128 });
    expect(skipped).toEqual([{ file: 'big.safetensors', reason: expect.stringMatching(/over the 16777216 this reader takes/) }]);
  });

  it('lists nothing for a folder that is not there', () => {
    expect(listLoras(join(root, 'none'))).toEqual({ files: new Map(), skipped: [] });
  });
});
