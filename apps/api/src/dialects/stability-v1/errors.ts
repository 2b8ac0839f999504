/**
 * Stability v1's error body `{id, name, message}`, which sdq's own routes answer too, with `field` added
 * when the error is about one (Stability's clients read name and message and pass over the rest).
 */
import type { ErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

export const stabilityV1Errors: ErrorShape = {
  owns: () => true,
  body: (id, err): ErrorBody => ({ id, name: err.code, message: err.message, ...(err.field === undefined ? {} : { field: err.field }) }),
};
