import { describe, expect, it } from 'vitest';
import { PIPELINE_ERROR_CODES, type PipelineErrorCode } from '@sdq/pipeline/errors';
import {
  ERROR_CATALOGUE,
  errorNameForPipelineCode,
  formatFailedReason,
  JobPayload,
  parseFailedReason,
  PIPELINE_ERROR_MAP,
  queueNameForEngine,
  TextToImageRequest,
} from '../src/index';

describe('contracts', () => {
  it('maps every pipeline error code onto the catalogue', () => {
    // Type-level: a PipelineErrorCode without a mapping makes `Unmapped` that code, and this line then
    // fails `npm test`'s type check (no cast: the map's keys are its literal keys).
    type Unmapped = Exclude<PipelineErrorCode, keyof typeof PIPELINE_ERROR_MAP>;
    const complete: [Unmapped] extends [never] ? true : Unmapped = true;
    expect(complete).toBe(true);
    // and at run time, from the pipeline's own list of codes
    for (const code of PIPELINE_ERROR_CODES) {
      expect(Object.hasOwn(PIPELINE_ERROR_MAP, code), code).toBe(true);
      expect(ERROR_CATALOGUE[errorNameForPipelineCode(code)], code).toBeDefined();
    }
    expect(errorNameForPipelineCode('not_a_code')).toBe('internal_error');
  });

  it('round-trips a failed reason, and hides unformatted ones', () => {
    expect(parseFailedReason(formatFailedReason('invalid_sampler', 'sampler K_HEUN: not supported'))).toEqual({
      name: 'invalid_sampler',
      message: 'sampler K_HEUN: not supported',
    });
    expect(parseFailedReason('ECONNRESET at 10.0.0.1').name).toBe('internal_error');
    expect(parseFailedReason('[not_a_code] x').name).toBe('internal_error');
  });

  it('names one queue per engine and refuses ids BullMQ cannot hold', () => {
    expect(queueNameForEngine('tiny-sd')).toBe('engine.tiny-sd');
    expect(() => queueNameForEngine('a:b')).toThrow(/invalid engine id/);
  });

  it('applies Stability defaults', () => {
    expect(TextToImageRequest.parse({ text_prompts: [{ text: 'a cat' }] })).toMatchObject({
      cfg_scale: 7,
      samples: 1,
      seed: 0,
      steps: 30,
      clip_guidance_preset: 'NONE',
    });
  });

  it('validates a payload per kind', () => {
    const base = { version: 1, jobId: 'j', accountId: 'a', engineId: 'tiny-sd', createdAt: 1 };
    const params = { prompts: [{ text: 'x' }], width: 128, height: 128, steps: 10, cfgScale: 7, samples: 1, seed: 0, outputFormat: 'png' };
    expect(JobPayload.safeParse({ ...base, kind: 'text-to-image', params }).success).toBe(true);
    expect(JobPayload.safeParse({ ...base, kind: 'image-to-image', params }).success).toBe(false); // inputs missing
    expect(JobPayload.safeParse({ ...base, kind: 'upscale', params: { outputFormat: 'png' }, inputs: { image: 'inputs/j/image' } }).success).toBe(true);
  });
});
