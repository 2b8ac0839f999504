/**
 * SD3's third tokenizer (T5's SentencePiece Unigram, from `tokenizer.json`), run by @huggingface/tokenizers
 * rather than a Unigram written here. Padded with the pad token to `maxLength` (tokenizer_config's
 * model_max_length, or the pipeline's max_sequence_length), truncated so that `</s>` stays last, as
 * transformers' T5TokenizerFast does with padding="max_length" and truncation.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { TokenizerFileError, type TokenizerOutput } from './clip-tokenizer';

export class T5Tokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly maxLength: number,
    private readonly padId: number,
    private readonly eosId: number | undefined,
  ) {}

  /** From a folder with tokenizer.json and tokenizer_config.json; `maxLength` overrides model_max_length. */
  static fromFolder(dir: string, maxLength?: number): T5Tokenizer {
    const read = (name: string) => {
      const path = join(dir, name);
      if (!existsSync(path)) throw new TokenizerFileError(path, 'missing');
      try {
        return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new TokenizerFileError(path, `not valid JSON (${(err as Error).message})`);
      }
    };
    const json = read('tokenizer.json');
    const config = read('tokenizer_config.json');
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (err) {
      throw new TokenizerFileError(join(dir, 'tokenizer.json'), `cannot be read as a tokenizer (${(err as Error).message})`);
    }
    const length = maxLength ?? config.model_max_length;
    if (typeof length !== 'number' || !Number.isInteger(length) || length < 2 || length > 1 << 16) {
      throw new TokenizerFileError(join(dir, 'tokenizer_config.json'), `model_max_length must be an integer from 2 to ${1 << 16} (got ${JSON.stringify(length)})`);
    }
    const token = (key: string, fallback: string) => (typeof config[key] === 'string' ? (config[key] as string) : fallback);
    const padId = tokenizer.token_to_id(token('pad_token', '<pad>'));
    if (padId === undefined) throw new TokenizerFileError(join(dir, 'tokenizer_config.json'), `pad_token ${token('pad_token', '<pad>')} is not in the vocabulary`);
    return new T5Tokenizer(tokenizer, length, padId, tokenizer.token_to_id(token('eos_token', '</s>')));
  }

  encode(text: string): TokenizerOutput {
    let ids = this.tokenizer.encode(text).ids;
    // The ids end with </s> (the post-processor adds it); only the text's tokens count.
    const hasEos = this.eosId !== undefined && ids[ids.length - 1] === this.eosId;
    const tokenCount = ids.length - (hasEos ? 1 : 0);
    let truncatedTokens = 0;
    if (ids.length > this.maxLength) {
      truncatedTokens = ids.length - this.maxLength;
      ids = hasEos ? [...ids.slice(0, this.maxLength - 1), this.eosId!] : ids.slice(0, this.maxLength);
    }
    while (ids.length < this.maxLength) ids.push(this.padId);
    return { ids, tokenCount, truncatedTokens };
  }
}
