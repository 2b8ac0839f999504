// Reading a scheduler_config.json against a scheduler's defaults, as diffusers' register_to_config
// does: the schedulers share these helpers; each passes its class name so errors still name it.

/**
 * The defaults with each key that config sets (non-null) put in their place. Unknown keys are
 * ignored; a missing or null key keeps its default. `nullable` gives the type each null-by-default
 * key takes when it is set ("number", "string" or "number[]").
 */
export function readConfig<T extends object>(
  name: string,
  defaults: T,
  config: Record<string, unknown>,
  nullable: Record<string, string>,
): T {
  const out = { ...defaults } as Record<string, unknown>;
  for (const [key, fallback] of Object.entries(defaults)) {
    const value = config[key];
    if (value === undefined || value === null) continue;
    const type = fallback === null ? nullable[key] : typeof fallback;
    const ok = type === 'number[]' ? Array.isArray(value) && value.every((v) => typeof v === 'number') : typeof value === type;
    if (!ok) throw new Error(`${name}: ${key} must be ${type === 'number[]' ? 'an array of numbers' : `a ${type}`} (got ${JSON.stringify(value)})`);
    out[key] = value;
  }
  return out as T;
}

export function checkOneOf(name: string, key: string, value: string, allowed: string[]): void {
  if (!allowed.includes(value)) throw new Error(`${name}: ${key} must be one of ${allowed.join(', ')} (got "${value}")`);
}
