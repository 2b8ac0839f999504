/** OpenAI's error body `{error: {message, type, param, code}}`: the types its SDK's error classes branch on. */
import type { OpenAIErrorBody } from '@sdq/contracts';
import type { ErrorShape } from '../error-shape';

/** OpenAI's error types by status. */
function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'insufficient_quota';
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

/** OpenAI's own codes for sdq's catalogue names, where its clients branch on them. */
const OPENAI_CODES: Partial<Record<string, string>> = { content_moderated: 'content_policy_violation', content_filtered: 'content_policy_violation' };

export const openaiErrors: ErrorShape = {
  owns: (path) => path.startsWith('/v1/images/') || path === '/v1/models',
  // param is the parameter's name: the form field image[] (gpt-image-1's list of images) is param image
  body: (_id, err): OpenAIErrorBody => ({ error: { message: err.message, type: openaiType(err.status), param: err.field?.replace(/\[\]$/, '') ?? null, code: OPENAI_CODES[err.code] ?? err.code } }),
};
