/**
 * A1111's adapter syntax in prompt text, for every dialect: `<lora:name>` and `<lora:name:weight>` are
 * taken out of the text before it is tokenized and become the request's LoRAs (the same name twice: the
 * weights add, as A1111 does). Any other `<kind:...>` tag A1111 knows (hypernet, lyco) is refused by
 * name rather than drawn as text; a `<` that is not such a tag stays text. Whether a name is a LoRA file
 * is the caller's to check (the LoRA folder's listing).
 */

/** Weights a LoRA may take, and how many one request may use (sdq's `loras` field shares them). */
export const LORA_WEIGHT_MIN = -4;
export const LORA_WEIGHT_MAX = 4;
export const MAX_LORAS = 8;

export interface LoraUse {
  name: string;
  weight: number;
}

export class LoraTagError extends Error {}

const TAG = /<([A-Za-z_]+):([^<>]*)>/g;
const REFUSED_KINDS = new Set(['hypernet', 'lyco']);
/** A LoRA or embedding name as a file stem may be: no path separators, not empty (dot-dot refused beside it). */
export const ADAPTER_NAME = /^[\w][\w .+-]{0,127}$/;

/** Whether a name can be a LoRA's or an embedding's file stem (never a path). */
export function isAdapterName(name: string): boolean {
  // a name becomes a key of A1111's embeddings answer: never one that reaches an object's prototype
  return ADAPTER_NAME.test(name) && !name.includes('..') && name !== '__proto__' && name !== 'constructor' && name !== 'prototype';
}

/** The prompt without its LoRA tags (spaces around a tag collapsed), and the LoRAs they name. */
export function extractLoraTags(text: string): { text: string; loras: LoraUse[] } {
  const loras: LoraUse[] = [];
  const stripped = text.replace(TAG, (whole, kind: string, body: string) => {
    const k = kind.toLowerCase();
    if (REFUSED_KINDS.has(k)) throw new LoraTagError(`${whole}: sdq applies LoRA files (<lora:name:weight>), not ${k === 'lyco' ? 'LyCORIS tags' : 'hypernetworks'}`);
    if (k !== 'lora') return whole;
    const [name, weightText, ...rest] = body.split(':');
    if (rest.length) throw new LoraTagError(`${whole}: expected <lora:name> or <lora:name:weight> (separate text-encoder and UNet weights are not taken)`);
    const trimmed = name.trim();
    if (!isAdapterName(trimmed)) throw new LoraTagError(`${whole}: "${trimmed}" is not a LoRA name (a file stem: letters, digits, spaces, . _ + -)`);
    const weight = weightText === undefined ? 1 : Number(weightText.trim());
    if (weightText !== undefined && (weightText.trim() === '' || !Number.isFinite(weight))) throw new LoraTagError(`${whole}: the weight must be a number`);
    addLora(loras, { name: trimmed, weight }, whole);
    return ' ';
  });
  return { text: stripped.replace(/\s{2,}/g, ' ').trim(), loras };
}

/** Adds a LoRA to a list (the weights of one name add); refuses weights out of range and too many LoRAs. */
export function addLora(loras: LoraUse[], use: LoraUse, where = use.name): void {
  const same = loras.find((l) => l.name === use.name);
  const weight = (same?.weight ?? 0) + use.weight;
  if (weight < LORA_WEIGHT_MIN || weight > LORA_WEIGHT_MAX) throw new LoraTagError(`${where}: a LoRA's weight is from ${LORA_WEIGHT_MIN} to ${LORA_WEIGHT_MAX} (${use.name} would be ${weight})`);
  if (same) same.weight = weight;
  else {
    if (loras.length >= MAX_LORAS) throw new LoraTagError(`${where}: at most ${MAX_LORAS} LoRAs in one request`);
    loras.push({ ...use });
  }
}
