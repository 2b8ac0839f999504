import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, TokenizerFileError } from '../src/tokenizer/clip-tokenizer';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const tinySd = join(repoRoot, 'models/tiny-sd');
const tinySdxl = join(repoRoot, 'models/tiny-sdxl');
const sdxlPresent = existsSync(tinySdxl);

async function readJson(file: string): Promise<any> {
  return JSON.parse(await readFile(file, 'utf8'));
}

describe('ClipTokenizer matches reference.json', () => {
  const cases = [
    { name: 'tiny-sd tokenizer', model: tinySd, folder: 'tokenizer', key: 'input_ids', padTokenId: 623, present: true },
    { name: 'tiny-sdxl tokenizer', model: tinySdxl, folder: 'tokenizer', key: 'input_ids', padTokenId: 623, present: sdxlPresent },
    { name: 'tiny-sdxl tokenizer_2 (pads with "!")', model: tinySdxl, folder: 'tokenizer_2', key: 'input_ids_2', padTokenId: 0, present: sdxlPresent },
  ];

  for (const c of cases) {
    const title = c.present ? c.name : `${c.name} (skipped: ${c.model} not found)`;
    it.skipIf(!c.present)(title, async () => {
      const tokenizer = await ClipTokenizer.fromFolder(join(c.model, c.folder));
      const reference = await readJson(join(c.model, 'reference.json'));
      expect(tokenizer.padTokenId).toBe(c.padTokenId);
      expect(reference.prompts.length).toBeGreaterThan(0);
      reference.prompts.forEach((prompt: string, i: number) => {
        const out = tokenizer.encode(prompt);
        expect(out.ids, JSON.stringify(prompt)).toEqual(reference[c.key][i]);
        expect(out.ids).toHaveLength(tokenizer.maxLength);
        expect(out.truncatedTokens).toBe(0);
      });
    });
  }
});

describe('ClipTokenizer on tiny-sd', () => {
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromFolder(join(tinySd, 'tokenizer'));
  });

  it('reads its limits and special tokens from the folder', () => {
    expect(tokenizer.maxLength).toBe(77);
    expect(tokenizer.bosTokenId).toBe(622);
    expect(tokenizer.eosTokenId).toBe(623);
    expect(tokenizer.padTokenId).toBe(623);
  });

  it('splits punctuation into its own tokens and keeps words intact', () => {
    const pieces = tokenizer.tokenize('a red circle, on a blue background!!');
    expect(pieces.slice(0, 4)).toEqual(['a</w>', 'red</w>', 'circle</w>', ',</w>']);
    expect(pieces).toContain('background</w>');
    // "!!" is one pre-token: its pieces come after "background" and end the word together.
    const bang = pieces.slice(pieces.indexOf('background</w>') + 1);
    expect(bang.join('')).toBe('!!</w>');
    expect(tokenizer.encode('a red circle, on a blue background!!').tokenCount).toBe(pieces.length);
  });

  it('tokenizes unknown words into byte pieces without the unk id', () => {
    const pieces = tokenizer.tokenize('a zebra');
    expect(pieces[0]).toBe('a</w>');
    expect(pieces.slice(1).join('')).toBe('zebra</w>');
    expect(pieces.length).toBeGreaterThan(2);
    const { ids, tokenCount } = tokenizer.encode('a zebra');
    // unk is <|endoftext|> here, so the text's ids must not contain the EOS id.
    expect(ids.slice(1, 1 + tokenCount)).not.toContain(tokenizer.eosTokenId);
  });

  it('treats special tokens typed in a prompt as those tokens', () => {
    expect(tokenizer.encode('red <|endoftext|>').ids.slice(0, 4)).toEqual([622, 611, 623, 623]);
  });

  const equivalent = [
    { name: 'upper case equals lower case', a: 'A RED Circle On A Blue BACKGROUND', b: 'a red circle on a blue background' },
    { name: 'whitespace runs collapse and ends are trimmed', a: '  a   red\tcircle\n\non  a blue   background  ', b: 'a red circle on a blue background' },
    { name: 'NFC normalisation', a: 'cafe\u0301', b: 'caf\u00e9' },
  ];
  it.each(equivalent)('$name', ({ a, b }) => {
    expect(tokenizer.tokenize(a)).toEqual(tokenizer.tokenize(b));
    expect(tokenizer.encode(a)).toEqual(tokenizer.encode(b));
  });

  it('truncates to model_max_length keeping BOS first and EOS last', () => {
    const words = ['red', 'blue', 'circle', 'square', 'triangle'];
    const prompt = Array.from({ length: 100 }, (_, i) => words[i % words.length]).join(' ');
    const out = tokenizer.encode(prompt);
    expect(out.tokenCount).toBe(100);
    expect(out.ids).toHaveLength(77);
    expect(out.ids[0]).toBe(tokenizer.bosTokenId);
    expect(out.ids[76]).toBe(tokenizer.eosTokenId);
    expect(out.truncatedTokens).toBe(out.tokenCount - 75);
    expect(out.ids.slice(1, 76)).toEqual(tokenizer.encode(prompt).ids.slice(1, 76));
  });

  it('a text of exactly maxLength - 2 tokens is not truncated', () => {
    const out = tokenizer.encode(Array(75).fill('red').join(' '));
    expect(out).toMatchObject({ tokenCount: 75, truncatedTokens: 0 });
    expect(out.ids[76]).toBe(tokenizer.eosTokenId);
  });

  it('returns the same result on repeat, unaffected by callers mutating it', () => {
    const prompt = 'a zebra and a yellow diamond';
    const first = tokenizer.tokenize(prompt);
    const copy = [...first];
    first.push('mutated');
    first[0] = 'mutated';
    expect(tokenizer.tokenize(prompt)).toEqual(copy);
    expect(tokenizer.encode(prompt)).toEqual(tokenizer.encode(prompt));
  });
});

describe('ClipTokenizer.fromFolder', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  async function copyFixture(): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), 'sdq-tokenizer-'));
    await cp(join(tinySd, 'tokenizer'), dir, { recursive: true });
    return dir;
  }

  it.each([
    { container: 'tokenizer_config.json', remove: 'special_tokens_map.json' },
    { container: 'special_tokens_map.json', remove: undefined },
  ])('reads pad_token written as {content} in $container', async ({ container, remove }) => {
    const folder = await copyFixture();
    if (remove) await unlink(join(folder, remove));
    const json = await readJson(join(folder, container));
    json.pad_token = { content: '!', lstrip: false, rstrip: false, normalized: false, special: true };
    await writeFile(join(folder, container), JSON.stringify(json));
    const tokenizer = await ClipTokenizer.fromFolder(folder);
    expect(tokenizer.padTokenId).toBe(0);
    expect(tokenizer.encode('').ids).toEqual([622, 623, ...Array(75).fill(0)]);
  });

  const broken: { name: string; file: string; message: RegExp; breakIt: (file: string) => Promise<void> }[] = [
    { name: 'missing vocab.json', file: 'vocab.json', message: /missing/, breakIt: (f) => unlink(f) },
    { name: 'vocab.json that is not JSON', file: 'vocab.json', message: /not valid JSON/, breakIt: (f) => writeFile(f, '{"a": 1,') },
    { name: 'vocab.json with a non-integer id', file: 'vocab.json', message: /"a".*non-negative integer/, breakIt: (f) => writeFile(f, '{"a": "x"}') },
    { name: 'missing merges.txt', file: 'merges.txt', message: /missing/, breakIt: (f) => unlink(f) },
    { name: 'malformed merges.txt line', file: 'merges.txt', message: /line 2/, breakIt: (f) => writeFile(f, '#version: 0.2\nabc\n') },
    { name: 'missing tokenizer_config.json', file: 'tokenizer_config.json', message: /missing/, breakIt: (f) => unlink(f) },
    {
      name: 'tokenizer_config.json without model_max_length',
      file: 'tokenizer_config.json',
      message: /model_max_length.*got undefined/,
      breakIt: (f) => writeFile(f, JSON.stringify({ do_lower_case: true })),
    },
    {
      name: 'a pad token that is not in the vocabulary',
      file: 'special_tokens_map.json',
      message: /pad_token "<pad>" is not in/,
      breakIt: async (f) => writeFile(f, JSON.stringify({ ...(await readJson(f)), pad_token: '<pad>' })),
    },
  ];
  it.each(broken)('rejects $name with a TokenizerFileError naming the file', async ({ file, message, breakIt }) => {
    const folder = await copyFixture();
    const path = join(folder, file);
    await breakIt(path);
    const error = await ClipTokenizer.fromFolder(folder).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenizerFileError);
    expect(error).toMatchObject({ code: 'invalid_model', file: path });
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toMatch(message);
  });
});
