/**
 * Schema problems in sdq's words, through the real request schemas: the field, what it takes (both
 * bounds where the schema has both) and what was sent; messages sdq's schemas set are kept.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { issueMessage, OpenAIImageGenerationRequest, TextToImageRequest } from '../src';

const messageOf = (schema: z.ZodType, value: unknown) => {
  const parsed = schema.safeParse(value);
  if (parsed.success) throw new Error('expected a problem');
  return issueMessage(parsed.error.issues[0], schema, value);
};
const body = (extra: Record<string, unknown>) => ({ text_prompts: [{ text: 'a red circle' }], ...extra });

describe('issueMessage', () => {
  it('names both bounds of a number and what was sent', () => {
    expect(messageOf(TextToImageRequest, body({ steps: 500 }))).toBe('steps: must be from 10 to 150 (got 500)');
    expect(messageOf(TextToImageRequest, body({ steps: 2 }))).toBe('steps: must be from 10 to 150 (got 2)');
    expect(messageOf(TextToImageRequest, body({ cfg_scale: 99 }))).toMatch(/^cfg_scale: must be from 0 to 35 \(got 99\)$/);
  });

  it('says what type a field takes, and when it is missing', () => {
    expect(messageOf(TextToImageRequest, body({ steps: 'many' }))).toBe('steps: must be a number (got "many")');
    expect(messageOf(TextToImageRequest, body({ steps: 10.5 }))).toBe('steps: must be a whole number (got 10.5)');
    expect(messageOf(TextToImageRequest, {})).toMatch(/^text_prompts: is required/);
    expect(messageOf(TextToImageRequest, { text_prompts: [{ weight: 1 }] })).toBe('text_prompts[0].text: is required (a string)');
  });

  it('lists the choices of an enum, and names unknown fields', () => {
    expect(messageOf(TextToImageRequest, body({ clip_guidance_preset: 'LOUD' }))).toMatch(/^clip_guidance_preset: must be one of FAST_BLUE, .*NONE.* \(got "LOUD"\)$/);
    expect(messageOf(OpenAIImageGenerationRequest, { prompt: 'x', colour: 'red' })).toBe('body: unknown field "colour" (this endpoint does not take it)');
  });

  it("keeps a message the schema wrote itself, and never shows zod's wording", () => {
    const own = z.object({ tier: z.string().min(1, 'tier: name a tier') });
    expect(messageOf(own, { tier: '' })).toBe('tier: tier: name a tier');
    for (const value of [body({ steps: 500 }), body({ samples: 0 }), body({ height: 'tall' }), { text_prompts: [] }, body({ seed: -1 })]) {
      expect(messageOf(TextToImageRequest, value)).not.toMatch(/Too big|Too small|Invalid input|expected number|<=|>=/);
    }
  });
});

