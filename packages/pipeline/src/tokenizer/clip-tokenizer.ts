/**
 * CLIP's byte-level BPE tokenizer, as transformers' CLIPTokenizer / CLIPTokenizerFast run it.
 * Everything (vocabulary, merges, special tokens, max length, padding token) comes from the
 * tokenizer folder, so SD 1.x, SD 2.x and SDXL's second tokenizer use the same code.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TokenizerOutput {
  /** BOS, the text's ids, EOS, then padding: exactly `maxLength` ids. */
  ids: number[];
  /** Tokens of the text, without BOS/EOS, before truncation. */
  tokenCount: number;
  /** How many text tokens truncation dropped (0 when the text fits). */
  truncatedTokens: number;
}

/** A tokenizer file is missing or malformed: the model folder is broken, retrying will not help. */
export class TokenizerFileError extends Error {
  readonly code = 'invalid_model' as const;
  readonly file: string;

  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'TokenizerFileError';
    this.file = file;
  }
}

// CLIP's pre-tokenizer: special tokens, English contractions, letter runs, single digits, and
// runs of everything else that is not whitespace (so "!!" stays one piece).
const PIECE_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
const END_OF_WORD = '</w>';
// A service sees an open-ended stream of prompts: bound the word cache so it cannot grow forever.
const WORD_CACHE_LIMIT = 50_000;

/**
 * GPT-2's reversible byte -> unicode table: printable bytes stand for themselves, the rest
 * are shifted to code points from 256 up so that no BPE symbol is whitespace or a control char.
 */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + shifted++);
  }
  return table;
}
const BYTE_SYMBOLS = bytesToUnicode();

interface SpecialTokens {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  private readonly unkTokenId: number;
  private readonly vocab: Map<string, number>;
  /** "first second" -> rank; a lower rank merges first. */
  private readonly mergeRanks: Map<string, number>;
  private readonly lowerCase: boolean;
  private readonly specials: SpecialTokens;
  private readonly cache = new Map<string, string[]>();

  private constructor(options: {
    vocab: Map<string, number>;
    mergeRanks: Map<string, number>;
    specials: SpecialTokens;
    maxLength: number;
    lowerCase: boolean;
    ids: { bos: number; eos: number; unk: number; pad: number };
  }) {
    this.vocab = options.vocab;
    this.mergeRanks = options.mergeRanks;
    this.specials = options.specials;
    this.maxLength = options.maxLength;
    this.lowerCase = options.lowerCase;
    this.bosTokenId = options.ids.bos;
    this.eosTokenId = options.ids.eos;
    this.unkTokenId = options.ids.unk;
    this.padTokenId = options.ids.pad;
  }

  /** Loads vocab.json, merges.txt, tokenizer_config.json and (if present) special_tokens_map.json. */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    const vocabFile = join(dir, 'vocab.json');
    const mergesFile = join(dir, 'merges.txt');
    const configFile = join(dir, 'tokenizer_config.json');
    const specialsFile = join(dir, 'special_tokens_map.json');

    const vocab = parseVocab(vocabFile, await readJson(vocabFile));
    const mergeRanks = parseMerges(mergesFile, await readText(mergesFile));
    const config = asObject(configFile, await readJson(configFile));
    const specialsJson = await readJson(specialsFile, { optional: true });
    const specialsMap = specialsJson === undefined ? {} : asObject(specialsFile, specialsJson);

    // Tokens declared only in added_tokens_decoder (not in vocab.json) still get their ids.
    addDeclaredTokens(configFile, config.added_tokens_decoder, vocab);

    // special_tokens_map.json overrides tokenizer_config.json, as transformers loads them;
    // the defaults are CLIPTokenizer's own.
    const special = (key: string, fallback: string): { token: string; file: string } => {
      const fromMap = tokenContent(specialsFile, key, specialsMap[key]);
      if (fromMap !== undefined) return { token: fromMap, file: specialsFile };
      const fromConfig = tokenContent(configFile, key, config[key]);
      return { token: fromConfig ?? fallback, file: configFile };
    };
    const bos = special('bos_token', '<|startoftext|>');
    const eos = special('eos_token', '<|endoftext|>');
    const unk = special('unk_token', '<|endoftext|>');
    const pad = special('pad_token', '<|endoftext|>');
    const idOf = (key: string, entry: { token: string; file: string }): number => {
      const id = vocab.get(entry.token);
      if (id === undefined) {
        throw new TokenizerFileError(entry.file, `${key} ${JSON.stringify(entry.token)} is not in ${vocabFile}`);
      }
      return id;
    };

    const maxLength = config.model_max_length;
    // transformers writes a huge sentinel when a checkpoint has no limit; CLIP's text encoder has a
    // fixed position table, so an unusable length means the folder is not a CLIP tokenizer.
    if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 2 || maxLength > 1 << 20) {
      throw new TokenizerFileError(
        configFile,
        `model_max_length must be an integer from 2 to ${1 << 20} (got ${JSON.stringify(maxLength)})`,
      );
    }
    const lowerCase = config.do_lower_case ?? true;
    if (typeof lowerCase !== 'boolean') {
      throw new TokenizerFileError(configFile, `do_lower_case must be a boolean (got ${JSON.stringify(lowerCase)})`);
    }

    return new ClipTokenizer({
      vocab,
      mergeRanks,
      specials: { bos: bos.token, eos: eos.token, unk: unk.token, pad: pad.token },
      maxLength,
      lowerCase,
      ids: { bos: idOf('bos_token', bos), eos: idOf('eos_token', eos), unk: idOf('unk_token', unk), pad: idOf('pad_token', pad) },
    });
  }

  /** BOS + text ids + EOS, truncated to keep EOS last, padded with the pad token to `maxLength`. */
  encode(text: string, words?: ReadonlyMap<string, number[]>): TokenizerOutput {
    const textIds = words?.size ? this.idsWithWords(text, words) : this.idsOf(text);
    const room = this.maxLength - 2;
    const kept = textIds.length > room ? textIds.slice(0, room) : textIds;
    const ids = [this.bosTokenId, ...kept, this.eosTokenId];
    while (ids.length < this.maxLength) ids.push(this.padTokenId);
    return { ids, tokenCount: textIds.length, truncatedTokens: textIds.length - kept.length };
  }

  private idsOf(text: string): number[] {
    return this.tokenize(text).map((piece) => this.vocab.get(piece) ?? this.unkTokenId);
  }

  /**
   * Ids with added words (embeddings' trigger words, lower-cased keys) standing for their own ids
   * wherever they appear as a whole word, any case; the text around them is tokenized as usual.
   */
  private idsWithWords(text: string, words: ReadonlyMap<string, number[]>): number[] {
    const alternatives = [...words.keys()].sort((a, b) => b.length - a.length).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const pattern = new RegExp(`(?<![\\p{L}\\p{N}_])(?:${alternatives.join('|')})(?![\\p{L}\\p{N}_])`, 'giu');
    const ids: number[] = [];
    let from = 0;
    for (const match of text.matchAll(pattern)) {
      ids.push(...this.idsOf(text.slice(from, match.index)), ...words.get(match[0].toLowerCase())!);
      from = match.index + match[0].length;
    }
    ids.push(...this.idsOf(text.slice(from)));
    return ids;
  }

  /** The text's BPE pieces ("red</w>", ...), without BOS/EOS or padding. */
  tokenize(text: string): string[] {
    let clean = text.normalize('NFC').replace(/\s+/g, ' ').trim();
    if (this.lowerCase) clean = clean.toLowerCase();
    const pieces: string[] = [];
    for (const match of clean.matchAll(PIECE_PATTERN)) {
      const word = match[0];
      // A BOS/EOS typed into the prompt is that special token, not its characters.
      if (word === this.specials.bos || word === this.specials.eos) {
        pieces.push(word);
        continue;
      }
      pieces.push(...this.bpe(word));
    }
    return pieces;
  }

  private bpe(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached) return cached;

    let symbols = Array.from(Buffer.from(word, 'utf8'), (b) => BYTE_SYMBOLS[b]);
    symbols[symbols.length - 1] += END_OF_WORD;

    while (symbols.length > 1) {
      // Find the pair with the lowest merge rank; stop when no adjacent pair is a merge.
      let bestRank = Infinity;
      let bestFirst = '';
      let bestSecond = '';
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestFirst = symbols[i];
          bestSecond = symbols[i + 1];
        }
      }
      if (bestRank === Infinity) break;
      // Merge every non-overlapping occurrence of that pair, left to right.
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i < symbols.length - 1 && symbols[i] === bestFirst && symbols[i + 1] === bestSecond) {
          merged.push(bestFirst + bestSecond);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }

    if (this.cache.size >= WORD_CACHE_LIMIT) {
      // Maps iterate in insertion order: drop the oldest word.
      this.cache.delete(this.cache.keys().next().value as string);
    }
    this.cache.set(word, symbols);
    return symbols;
  }
}

// ---- file reading, each failure naming the file and what is wrong ----

async function readText(file: string, opts: { optional: true }): Promise<string | undefined>;
async function readText(file: string): Promise<string>;
async function readText(file: string, opts?: { optional: true }): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts?.optional) return undefined;
    throw new TokenizerFileError(file, code === 'ENOENT' ? 'file is missing' : `cannot be read (${(err as Error).message})`);
  }
}

async function readJson(file: string, opts?: { optional: true }): Promise<unknown> {
  const text = opts ? await readText(file, opts) : await readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TokenizerFileError(file, `is not valid JSON (${(err as Error).message})`);
  }
}

function asObject(file: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenizerFileError(file, `expected a JSON object (got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)})`);
  }
  return value as Record<string, unknown>;
}

function parseVocab(file: string, json: unknown): Map<string, number> {
  const entries = Object.entries(asObject(file, json));
  if (entries.length === 0) throw new TokenizerFileError(file, 'vocabulary is empty');
  const vocab = new Map<string, number>();
  for (const [token, id] of entries) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new TokenizerFileError(file, `id of token ${JSON.stringify(token)} must be a non-negative integer (got ${JSON.stringify(id)})`);
    }
    vocab.set(token, id);
  }
  return vocab;
}

function parseMerges(file: string, text: string): Map<string, number> {
  const ranks = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (line === '' || (index === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new TokenizerFileError(file, `line ${index + 1} must be two symbols separated by one space (got ${JSON.stringify(line)})`);
    }
    // Rank = position in the file (header excluded); real merges files never repeat a pair.
    if (!ranks.has(line)) ranks.set(line, ranks.size);
  });
  if (ranks.size === 0) throw new TokenizerFileError(file, 'contains no merges');
  return ranks;
}

/** A special token is written either as a string or as an AddedToken object `{content: "..."}`. */
function tokenContent(file: string, key: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new TokenizerFileError(file, `${key} must be a string or an object with a string "content" (got ${JSON.stringify(value)})`);
}

function addDeclaredTokens(file: string, declared: unknown, vocab: Map<string, number>): void {
  if (declared === undefined || declared === null) return;
  for (const [idText, entry] of Object.entries(asObject(file, declared))) {
    const id = Number(idText);
    const content = tokenContent(file, `added_tokens_decoder["${idText}"]`, entry);
    if (!Number.isInteger(id) || id < 0 || content === undefined) {
      throw new TokenizerFileError(file, `added_tokens_decoder entry ${JSON.stringify(idText)} must map an integer id to a token`);
    }
    if (!vocab.has(content)) vocab.set(content, id);
  }
}
