/** fal's error body: `detail` as fal answers it, `message` as the AI SDK's fal provider reads it, and sdq's catalogue name as `code`. */
import type { FalErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

export const falErrors: ErrorShape = {
  owns: (path) => path === '/fal' || path.startsWith('/fal/'),
  body: (_id, err): FalErrorBody => ({ detail: err.message, message: err.message, code: err.code }),
};
