/**
 * What a request gets for what it leaves out, in one module with no imports: the engine description,
 * the pipeline and the CLI's help read it (the help without loading onnxruntime).
 */

/** Steps and guidance when neither the request, the manifest nor the family says: diffusers' SD defaults as Stability's API uses them. */
export const REQUEST_DEFAULTS = { steps: 30, cfgScale: 7 } as const;

/** The pipeline's defaults for every request field it fills in. */
export const DEFAULTS = { ...REQUEST_DEFAULTS, samples: 1, imageStrength: 0.35, outputFormat: 'png' as 'png' | 'jpeg' | 'webp' };
