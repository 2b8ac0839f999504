/** Stability's v2beta error body: `{id, name, errors: [message]}`. */
import type { V2ErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

export const v2betaErrors: ErrorShape = {
  owns: (path) => path.startsWith('/v2beta/'),
  body: (id, err): V2ErrorBody => ({ id, name: err.code, errors: [err.message] }),
};
