/** Stability's v2beta error body `{id, name, errors: [message]}`, with `field` when the error is about one. */
import type { V2ErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

/** Stability's own names for sdq's catalogue names, where its v2beta answers differ. */
const V2BETA_NAMES: Partial<Record<string, 'content_moderation'>> = { content_moderated: 'content_moderation' };

export const v2betaErrors: ErrorShape = {
  owns: (path) => path.startsWith('/v2beta/'),
  body: (id, err): V2ErrorBody => ({ id, name: V2BETA_NAMES[err.code] ?? err.code, errors: [err.message], ...(err.field === undefined ? {} : { field: err.field }) }),
};
