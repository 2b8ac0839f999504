/**
 * Replicate's error body, `{title, detail, status}`: the `detail` its clients put in their errors; `code`
 * adds sdq's catalogue name, for a machine to read.
 */
import type { ReplicateErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

const TITLES: Readonly<Record<number, string>> = {
  400: 'Invalid input',
  401: 'Unauthenticated',
  402: 'Insufficient credit',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  413: 'Payload too large',
  422: 'Input validation failed',
  429: 'Too many requests',
  503: 'Service unavailable',
};

export const replicateErrors: ErrorShape = {
  owns: (path) => path === '/replicate' || path.startsWith('/replicate/'),
  body: (_id, err): ReplicateErrorBody => ({ title: TITLES[err.status] ?? (err.status >= 500 ? 'Internal server error' : 'Bad request'), detail: err.message, status: err.status, code: err.code }),
};
