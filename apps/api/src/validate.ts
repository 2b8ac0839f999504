import type { z } from 'zod';
import { errorNameForField, issueMessage, issuePath, ServiceError } from '@sdq/contracts';

/**
 * A request body or query checked against its schema; the first problem is the 4xx, named by field
 * and said in sdq's words (`steps: must be from 10 to 150 (got 500)`). Every route validates through here.
 */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  // the innermost field with a name of its own (`keyframes.0.text_prompts`: invalid_prompts), else the outermost's
  const names = issue.path.filter((p): p is string => typeof p === 'string').map((p) => errorNameForField(p));
  const name = [...names].reverse().find((n) => n !== 'bad_request') ?? errorNameForField(issue.path[0] as string | undefined);
  throw new ServiceError(name, issueMessage(issue, schema, value), { field: issuePath(issue.path) });
}
