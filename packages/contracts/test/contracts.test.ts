import { describe, expect, it } from 'vitest';
import type { PipelineErrorCode } from '@sdq/pipeline/errors';
import {
  ERROR_CATALOGUE,
  type ErrorName,
  formatFailedReason,
  JobPayload,
  parseFailedReason,
  PIPELINE_ERROR_MAP,
  queueNameForEngine,
  TextToImageRequest,
} from '../src/index';

describe('contracts', () => {
  it('maps every pipeline error code onto the catalogue', () => {
    // Type-level: adding a PipelineErrorCode without a mapping fails typecheck here.
    const map: Record<PipelineErrorCode, ErrorName> = PIPELINE_ERROR_MAP as Record<PipelineErrorCode, ErrorName>;
    for (const name of Object.values(map)) expect(ERROR_CATALOGUE[name]).toBeDefined();
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
