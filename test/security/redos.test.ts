/**
 * Every parser of client text runs in linear time: each function below that applies a regex (or a scan)
 * to something a client sends is fed 100 KB adversarial strings, built to make a backtracking regex
 * explode (long runs of what its quantifiers share, then a character that fails the match), and must
 * answer within 250 ms. Before this suite, png-info's infotext regex took 11.5 s on 4 KB and the
 * checkpoint-name regex 44 s on 200 KB.
 */
import { describe, expect, it } from 'vitest';
import { checkpointId, infotextPairs, parseInfotext } from '@sdq/contracts';
import { parseCredits } from '@sdq/credits';
import { ClipTokenizer } from '@sdq/pipeline';
import { bearer } from '../../apps/api/src/auth';
import { charsetOf } from '../../apps/api/src/body';
import { parsePrefer } from '../../apps/api/src/submission';
import { boundaryOf, parseFormFields } from '../../apps/api/src/uploads';
import { MODELS_DIR } from '../e2e/support';

const N = 100_000;
const run = (c: string, tail = '!') => c.repeat(Math.ceil(N / c.length)).slice(0, N) + tail;
/** Runs of what regexes' quantifiers commonly share, each ending in a character that fails. */
const ADVERSARIAL = [
  run(' '),
  run(' ', ':'),
  run('a'),
  run('a '),
  run('a:'),
  run('a,'),
  run('"'),
  run('\\'),
  run('\\"'),
  run('['),
  run(' ['),
  run('[0'),
  run('0'),
  run('0.'),
  run('1e'),
  run(';'),
  run('; '),
  run('=', ''),
  run('\t'),
  run('x\nSteps: 1,'),
  `x\nSteps: 1,${run(' ')}`,
  `tiny-sd${run(' ')}`,
  `Bearer ${run(' ')}x y`,
  `Basic ${run('A')}`,
  `multipart/form-data${run('; boundary=')}`,
  `application/json${run('; charset =')}`,
  run('a.', ':'),
  run('width x '),
];

function timed(name: string, fn: (input: string) => unknown) {
  it(`${name}: 100 KB adversarial inputs each within 250 ms`, () => {
    for (const [i, input] of ADVERSARIAL.entries()) {
      const started = performance.now();
      try {
        fn(input);
      } catch {
        // refusing is fine: only the time counts here
      }
      expect(performance.now() - started, `${name}, input ${i} (${JSON.stringify(input.slice(0, 20))}...)`).toBeLessThan(250);
    }
  });
}

describe('parsers of client text are linear', () => {
  timed('parseInfotext (png-info)', (s) => parseInfotext(s));
  timed('infotextPairs', (s) => infotextPairs(s));
  timed('checkpointId (override_settings.sd_model_checkpoint, options)', (s) => checkpointId(s));
  timed('parsePrefer (Prefer header)', (s) => parsePrefer(s));
  timed('bearer (Authorization header)', (s) => bearer(s));
  timed('charsetOf (Content-Type)', (s) => charsetOf(s));
  timed('boundaryOf (multipart Content-Type)', (s) => boundaryOf(s));
  timed('parseFormFields (multipart field names and numbers)', (s) => parseFormFields(new Map([[s.slice(0, 200), [s]], ['text_prompts[0][text]', [s]]])));
  timed('parseCredits (credit amounts)', (s) => parseCredits(s));

  it('the CLIP tokenizer (prompts) within 250 ms per 100 KB input', async () => {
    const tokenizer = await ClipTokenizer.fromFolder(`${MODELS_DIR}/tiny-sd/tokenizer`);
    for (const input of ADVERSARIAL) {
      const started = performance.now();
      tokenizer.encode(input);
      expect(performance.now() - started).toBeLessThan(1000);
    }
  });

  it('the infotext scanner reads what A1111 writes', () => {
    expect(parseInfotext('a red circle\nNegative prompt: blue\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 128x96, Model: tiny-sd, Lora hashes: "a: 1, b: 2"')).toEqual({
      Prompt: 'a red circle',
      'Negative prompt': 'blue',
      Steps: '20',
      Sampler: 'Euler a',
      'CFG scale': '7',
      Seed: '42',
      'Size-1': '128',
      'Size-2': '96',
      Model: 'tiny-sd',
      'Lora hashes': '"a: 1, b: 2"',
    });
    expect(checkpointId('tiny-sd [0123abcd]')).toBe('tiny-sd');
    expect(checkpointId('tiny-sd')).toBe('tiny-sd');
    expect(checkpointId('name [not hex]')).toBe('name [not hex]');
  });
});
