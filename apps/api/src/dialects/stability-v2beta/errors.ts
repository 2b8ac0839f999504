/** Stability's v2beta error body `{id, name, errors: [message]}`, with `field` when the error is about one. */
import type { V2ErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

export const v2betaErrors: ErrorShape = {
  owns: (path) => path.startsWith('/v2beta/'),
  body: (id, err): V2ErrorBody => ({ id, name: err.code, errors: [err.message], ...(err.field === undefined ? {} : { field: err.field }) }),
};
