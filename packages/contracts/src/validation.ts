/**
 * A schema problem in sdq's words, naming the field and what it takes: `steps: must be from 10 to 150
 * (got 500)`, not the validator's "Too big: expected number to be <=150". Messages a schema sets
 * itself (sdq's own, lower-case) are kept as written.
 */
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;

/** The path as a client writes it: `text_prompts[0].text`; the whole body is `body`. */
export function issuePath(path: readonly PropertyKey[]): string {
  if (!path.length) return 'body';
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
}

/** zod's own messages start with a capital ("Too big: ...", "Invalid input: ..."); sdq's never do. */
const ZOD_DEFAULT = /^(Too big|Too small|Invalid|Unrecognized key|Expected|Required)/;

interface Def {
  type?: string;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  getter?: () => Schema;
}
interface Schema {
  _zod?: { def: Def; bag?: { minimum?: number; maximum?: number; format?: string } };
  minValue?: number | null;
  maxValue?: number | null;
  isInt?: boolean;
}

/** The schema under a path, through optional/default/nullable/pipe wrappers (undefined where it cannot tell). */
function nodeAt(schema: Schema | undefined, path: readonly PropertyKey[]): Schema | undefined {
  let node = unwrap(schema);
  for (const key of path) {
    const def = node?._zod?.def;
    if (!def) return undefined;
    if (def.type === 'object' && typeof key === 'string') node = unwrap(def.shape?.[key]);
    else if (def.type === 'array' && typeof key === 'number') node = unwrap(def.element);
    else return undefined;
  }
  return node;
}

function unwrap(schema: Schema | undefined): Schema | undefined {
  let node = schema;
  for (let i = 0; i < 10 && node?._zod; i++) {
    const def = node._zod.def;
    if (['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional'].includes(def.type ?? '') && def.innerType) node = def.innerType;
    else if (def.type === 'pipe' && def.in) node = def.in;
    else if (def.type === 'lazy' && def.getter) node = def.getter();
    else break;
  }
  return node;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

const TYPE_NAMES: Record<string, string> = { int: 'a whole number', number: 'a number', string: 'a string', boolean: 'true or false', array: 'a list', object: 'an object' };

/** What the issue says, in sdq's words (without the path). */
export function describeIssue(issue: Issue, schema?: unknown, value?: unknown): string {
  if (!ZOD_DEFAULT.test(issue.message)) return issue.message;
  const got = valueAt(value, issue.path);
  switch (issue.code) {
    case 'too_big':
    case 'too_small': {
      const origin = issue.origin;
      if (origin === 'number' || origin === 'int' || origin === 'bigint') {
        const node = nodeAt(schema as Schema, issue.path);
        const min = node?.minValue ?? (issue.code === 'too_small' ? Number(issue.minimum) : undefined);
        const max = node?.maxValue ?? (issue.code === 'too_big' ? Number(issue.maximum) : undefined);
        const safe = (n: number | null | undefined) => n !== undefined && n !== null && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER;
        if (safe(min) && safe(max) && issue.inclusive) return `must be from ${min} to ${max} (got ${shown(got)})`;
        if (issue.code === 'too_big') return `must be ${issue.inclusive ? 'at most' : 'less than'} ${issue.maximum} (got ${shown(got)})`;
        return `must be ${issue.inclusive ? 'at least' : 'more than'} ${issue.minimum} (got ${shown(got)})`;
      }
      const unit = origin === 'string' ? 'characters' : origin === 'array' || origin === 'set' ? 'items' : origin === 'file' ? 'bytes' : 'entries';
      if (issue.code === 'too_small' && Number(issue.minimum) === 1 && origin === 'string') return 'must not be empty';
      if (issue.code === 'too_small' && Number(issue.minimum) === 1) return `must have at least 1 ${unit === 'items' ? 'item' : unit}`;
      return issue.code === 'too_big' ? `must have at most ${issue.maximum} ${unit}` : `must have at least ${issue.minimum} ${unit}`;
    }
    case 'invalid_type': {
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      if (got === undefined) return `is required (${expected})`;
      return `must be ${expected} (got ${shown(got)})`;
    }
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${shown(issue.values[0])} (got ${shown(got)})` : `must be one of ${issue.values.map((v) => String(v)).join(', ')} (got ${shown(got)})`;
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (this endpoint does not take ${issue.keys.length > 1 ? 'them' : 'it'})`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor} (got ${shown(got)})`;
    case 'invalid_format':
      return `must be a valid ${issue.format === 'url' ? 'URL' : issue.format} (got ${shown(got)})`;
    case 'invalid_union':
      return `is not any of the forms this field takes (got ${shown(got)})`;
    default:
      return issue.message;
  }
}

/** `path: problem`, the first line of every 4xx a schema refuses. */
export function issueMessage(issue: Issue, schema?: unknown, value?: unknown): string {
  return `${issuePath(issue.path)}: ${describeIssue(issue, schema, value)}`;
}
