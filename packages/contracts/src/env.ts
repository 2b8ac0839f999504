/**
 * Environment parsing shared by every process: the value helpers, and one error format,
 * "Invalid environment: <VAR> <problem> (got <value>)", with secrets masked. Each app's config module
 * declares its own variables with these and is the only place that reads process.env.
 */
import { z } from 'zod';

export class ConfigError extends Error {}

export const envInt = (min: number, max: number) =>
  z.coerce.number({ message: 'must be a number' }).int('must be an integer').min(min).max(max);

export const envBool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const envUrl = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.join(' or ')}//`);

export const envList = z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));

export const LOG_LEVEL = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|KEY_ID/;

/** Validates an environment against a schema; empty strings mean "unset", as in most .env files. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const name = String(issue.path[0]);
  const value = cleaned[name];
  const got = value === undefined ? '' : ` (got ${JSON.stringify(SECRET_NAME.test(name) ? '***' : value)})`;
  throw new ConfigError(`Invalid environment: ${name} ${issue.message}${got}`);
}
