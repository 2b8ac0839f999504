/** AUTOMATIC1111's error body `{error, detail, body, errors}`: `error` is sdq's catalogue name, `detail` the message. */
import type { A1111ErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

export const a1111Errors: ErrorShape = {
  owns: (path) => path.startsWith('/sdapi/'),
  body: (_id, err): A1111ErrorBody => ({ error: err.code, detail: err.message, body: '', errors: err.message }),
};
