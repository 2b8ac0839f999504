/** The submission kit every dialect builds on: import from here, never from another dialect. */
export { checkWebhook, endedAsError, type GenerationDeps, isDryRun, parsePrefer, submitAndWait, submitJob } from './submit';
export { applyStyle, checkSize, dataUriBytes, enginesByName, formEventsFilter, hiresParams, requireFile, resolvePrompts, webhookOf } from './requests';
export { sizeForShape } from './sizes';
export { type MaskOptions, repaintMask } from './masks';
