/**
 * Every error the pipeline throws on purpose. `code` is machine-readable and stable; the service maps
 * codes onto its HTTP error catalogue. Anything else thrown from the pipeline is a bug or a runtime fault.
 */
/** Every code a PipelineError can carry (the contracts test checks each has a catalogue mapping). */
export const PIPELINE_ERROR_CODES = [
  'invalid_height_or_width',
  'invalid_samples',
  'invalid_prompts',
  'invalid_steps',
  'invalid_cfg_scale',
  'invalid_seed',
  'invalid_sampler',
  'invalid_image_strength',
  'invalid_image',
  'invalid_image_dimensions',
  'invalid_mask_image',
  'invalid_output_format',
  'invalid_model',
  'unsupported_mode',
  'invalid_lora',
  'invalid_embedding',
  'provider_unavailable',
  'canceled',
  'invalid_keyframes',
  'content_filtered',
] as const;
export type PipelineErrorCode = (typeof PIPELINE_ERROR_CODES)[number];

export class PipelineError extends Error {
  constructor(
    readonly code: PipelineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PipelineError';
  }
}

/** True for errors caused by the request itself: retrying the same input cannot succeed. */
export function isInputError(err: unknown): err is PipelineError {
  return err instanceof PipelineError && err.code !== 'provider_unavailable' && err.code !== 'canceled';
}
