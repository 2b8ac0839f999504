/** What the OpenAPI document's parts share: JSON Schema from zod, error responses, and the parameters of a dialect's job routes. */
import { z } from 'zod';
import { ERROR_CATALOGUE } from '@sdq/contracts';

export type JsonSchema = Record<string, unknown>;

/** JSON Schema of one zod schema; named sub-schemas move to components. */
export function schemaOf(schema: z.ZodType, components: Record<string, JsonSchema>, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
  const text = JSON.stringify(json).replaceAll('"#/$defs/', '"#/components/schemas/');
  const { $schema: _, $defs, ...rest } = JSON.parse(text) as JsonSchema & { $defs?: Record<string, JsonSchema> };
  Object.assign(components, $defs ?? {});
  return rest;
}

/** Error responses by status for the named catalogue errors, in one dialect's error schema. */
export function errorsIn(names: string[], schema: string): Record<string, unknown> {
  const statusOf = (n: string) => ERROR_CATALOGUE[n as keyof typeof ERROR_CATALOGUE].status;
  return Object.fromEntries(
    [...new Set(names.map(statusOf))].map((status) => [
      String(status),
      { description: names.filter((n) => statusOf(n) === status).join(', '), content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } },
    ]),
  );
}


/** Passed to each dialect's openapi.ts. */
export interface OpenApiKit {
  /** components.schemas: a dialect adds its error schema and named sub-schemas here. */
  schemas: Record<string, JsonSchema>;
  schemaOf: typeof schemaOf;
  errorsIn: typeof errorsIn;
  /** A multipart schema with these fields as files. */
  withImage(schema: JsonSchema, files: string[]): JsonSchema;
  dryRunParam: Record<string, unknown>;
  idempotencyParam: Record<string, unknown>;
  /** The `{id}` path parameter of a job. */
  jobParam: Record<string, unknown>;
  /** What every dialect job route takes besides its body: Idempotency-Key, Prefer, dry_run, X-Webhook-URL. */
  dialectJobParams: Record<string, unknown>[];
  /** The 202 of a job not finished within the wait. */
  notFinished: Record<string, unknown>;
  /** The job object's schema. */
  job: JsonSchema;
}
