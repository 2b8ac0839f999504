/**
 * Client-supplied keys are hostile. Every object the service builds from a field name, a JSON key or a
 * query parameter has no prototype, and these three names are refused outright: with them a request
 * could reach Object.prototype and change what every other account's request does.
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * How deep any body the service walks may nest. Stability's deepest field is two levels down
 * (`text_prompts[0].text`); 32 leaves room for `extras` while keeping every walk far from the stack.
 */
export const MAX_BODY_DEPTH = 32;

/** An empty object with no prototype: `obj.steps` is what the client put there, or undefined. */
export function bareObject<T = unknown>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

export type TreeProblem = { kind: 'forbidden_key'; path: string; key: string } | { kind: 'too_deep'; path: string };

/**
 * The first forbidden key or over-deep level in a parsed JSON-like value, or undefined. Iterative (an
 * explicit stack), so a body nested 100,000 deep is refused, not a stack overflow.
 */
export function findTreeProblem(value: unknown, maxDepth = MAX_BODY_DEPTH): TreeProblem | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { value: node, path, depth } = stack.pop()!;
    if (node === null || typeof node !== 'object' || ArrayBuffer.isView(node)) continue;
    if (depth >= maxDepth) return { kind: 'too_deep', path: path || 'body' };
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push({ value: node[i], path: `${path}[${i}]`, depth: depth + 1 });
      continue;
    }
    // Own keys, `__proto__` included: JSON.parse makes it an own property, never the prototype.
    for (const key of Object.keys(node)) {
      const child = path ? `${path}.${key}` : key;
      // A key is refused whole or by any of its bracket or dot segments (`__proto__[steps]` in a query).
      const bad = FORBIDDEN_KEYS.has(key) ? key : key.split(/[[\].]/).find((segment) => FORBIDDEN_KEYS.has(segment));
      if (bad) return { kind: 'forbidden_key', path: child, key: bad };
      stack.push({ value: (node as Record<string, unknown>)[key], path: child, depth: depth + 1 });
    }
  }
  return undefined;
}

/** The field a TreeProblem's 400 is about: its path, or the part of the request ("body", "query"). */
export function treeProblemField(problem: TreeProblem, where = 'body'): string {
  return problem.path === 'body' || !problem.path ? where : problem.path;
}

/** The message a 400 gives for a TreeProblem; `where` names the part of the request ("query", "body"). */
export function describeTreeProblem(problem: TreeProblem, where = 'body'): string {
  const at = problem.path === 'body' || !problem.path ? where : `${where === 'body' ? '' : `${where} `}${problem.path}`;
  return problem.kind === 'forbidden_key'
    ? `${at}: the key ${JSON.stringify(problem.key)} is not allowed`
    : `${at}: nests deeper than ${MAX_BODY_DEPTH} levels`;
}
