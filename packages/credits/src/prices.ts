/**
 * The price formula, once. Per image of a generation:
 *
 *   credits = max(min_credits, k * (width * height - offset) * steps / 30)
 *
 * or, for an engine priced per image whatever its size (Stability's SDXL 1.0: 0.9 credits at 30 steps
 * or fewer), `per_image * max(steps, min_steps) / 30` when the entry sets per_image; with `flat`, just
 * `per_image` whatever the steps (Stability's SD3).
 *
 * computed in integer micro-credits with exact decimal arithmetic (k is read as the decimal the JSON
 * wrote, not as a binary double), each image's price rounded to the nearest micro-credit (halves up); a
 * request costs the per-image price times its samples. An upscale costs a flat `upscale` per image.
 *
 * The table ships as prices.json (Stability's SD 1.x figures as the default; tiny-sd priced so its native
 * 128x128 at 30 steps is 0.20). An operator file of the same shape is applied on top. For one engine the
 * fields resolve, later winning: shipped default < operator default < shipped engine < operator engine.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { type Decimal, InvalidAmountError, parseCredits, parseDecimal } from './amounts';

/** A price table or operator file that cannot be used; the message names the file and the field. */
export class PriceFileError extends Error {
  readonly code = 'invalid_price_file';
  constructor(message: string) {
    super(message);
    this.name = 'PriceFileError';
  }
}

/** A decimal number of credits with at most 6 decimal places, >= 0. */
const CreditsValue = z.number().refine(
  (n) => {
    try {
      parseCredits(n, { allowZero: true });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be a number of credits >= 0 with at most 6 decimal places' },
);

const EnginePriceEntry = z.strictObject({
  /** Credits per pixel-step (per pixel at 30 steps). */
  k: z.number().nonnegative().finite().optional(),
  /** Pixels given free (Stability: 169,527). */
  offset: z.number().int().optional(),
  /** The least an image costs. */
  min_credits: CreditsValue.optional(),
  /** Flat credits per upscaled image. */
  upscale: CreditsValue.optional(),
  /** Credits per image at 30 steps, whatever its size; replaces the pixel formula when set. */
  per_image: CreditsValue.optional(),
  /** With per_image: fewer steps than this cost as many (Stability's SDXL: 30). Default 0. */
  min_steps: z.number().int().min(0).max(1000).optional(),
  /** With per_image: the price does not scale with steps at all (Stability's SD3). Default false. */
  flat: z.boolean().optional(),
  /** Credits added to each image per LoRA the request applies. Default 0. */
  lora: CreditsValue.optional(),
});
export type EnginePriceEntry = z.infer<typeof EnginePriceEntry>;

export const PriceFile = z.strictObject({
  $comment: z.string().optional(),
  default: EnginePriceEntry.optional(),
  engines: z.record(z.string().min(1), EnginePriceEntry).optional(),
});
export type PriceFile = z.infer<typeof PriceFile>;

/** One engine's prices, resolved. Amounts in micro-credits. */
export interface EnginePrice {
  /** Credits per pixel-step, as written in the table. */
  k: number;
  offset: number;
  min_credits: number;
  upscale: number;
  /** Micro-credits per image at 30 steps, when the engine is priced per image. */
  per_image?: number;
  min_steps: number;
  flat: boolean;
  /** Micro-credits per image per LoRA applied. */
  lora: number;
}

/** The price of a request. Amounts in micro-credits. */
export interface Cost {
  per_image: number;
  samples: number;
  total: number;
}

export interface GenerationSize {
  width: number;
  height: number;
  steps: number;
  /** Default 1. */
  samples?: number;
  /** LoRAs applied (each adds the entry's `lora` to every image). Default 0. */
  loras?: number;
}

const SHIPPED_FILE = fileURLToPath(new URL('./prices.json', import.meta.url));

/** Not a possible engine id (queue names forbid ':'): resolves to the default alone. */
const UNNAMED_ENGINE = ':default';

export class PriceTable {
  private constructor(
    private readonly shipped: PriceFile,
    private readonly operator: PriceFile,
  ) {}

  /**
   * The shipped table with the operator's file (if any) on top, both validated. A bad file is a
   * PriceFileError naming it and the first bad field: "Invalid price file /etc/sdq/prices.json:
   * engines.tiny-sd.k: ...".
   */
  static load(opts: { file?: string } = {}): PriceTable {
    const shipped = readPriceFile(SHIPPED_FILE);
    const operator = opts.file ? readPriceFile(opts.file) : {};
    return PriceTable.from(shipped, operator, opts.file);
  }

  /** From parsed objects (tests, or a table kept elsewhere); validated as load() validates files. */
  static from(shipped: unknown, operator: unknown = {}, operatorName = 'operator prices'): PriceTable {
    const table = new PriceTable(validate(shipped, 'shipped prices.json'), validate(operator, operatorName));
    // Every engine named must resolve to a complete price, so a gap fails at start-up, not on a request.
    table.engine(UNNAMED_ENGINE);
    for (const id of table.engineIds()) table.engine(id);
    return table;
  }

  /** Whether the table (shipped or operator's) has an entry of this name: a lookup, for every request. */
  names(engineId: string): boolean {
    return Object.hasOwn(this.shipped.engines ?? {}, engineId) || Object.hasOwn(this.operator.engines ?? {}, engineId);
  }

  /** Engines the table names (others get the default). */
  engineIds(): string[] {
    return [...new Set([...Object.keys(this.shipped.engines ?? {}), ...Object.keys(this.operator.engines ?? {})])].sort();
  }

  /** An engine's resolved prices; an engine the table does not name gets the default. */
  engine(engineId: string): EnginePrice {
    const merged = {
      ...this.shipped.default,
      ...this.operator.default,
      ...this.shipped.engines?.[engineId],
      ...this.operator.engines?.[engineId],
    };
    const missing = (['k', 'offset', 'min_credits', 'upscale'] as const).filter((f) => merged[f] === undefined);
    if (missing.length) throw new PriceFileError(`Invalid prices: engine ${engineId} has no ${missing.join(', ')} (set them under "default" or the engine)`);
    return {
      k: merged.k!,
      offset: merged.offset!,
      min_credits: parseCredits(merged.min_credits!, { allowZero: true }),
      upscale: parseCredits(merged.upscale!, { allowZero: true }),
      per_image: merged.per_image === undefined ? undefined : parseCredits(merged.per_image, { allowZero: true }),
      min_steps: merged.min_steps ?? 0,
      flat: merged.flat ?? false,
      lora: merged.lora === undefined ? 0 : parseCredits(merged.lora, { allowZero: true }),
    };
  }

  /** What a text-to-image, image-to-image or masking request costs. */
  generation(engineId: string, size: GenerationSize): Cost {
    const samples = size.samples ?? 1;
    for (const [name, value] of Object.entries({ width: size.width, height: size.height, steps: size.steps, samples })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer (got ${value})`);
    }
    const price = this.engine(engineId);
    const perImage =
      price.per_image !== undefined
        ? Math.max(price.min_credits, price.flat ? price.per_image : roundHalfUp(BigInt(price.per_image) * BigInt(Math.max(size.steps, price.min_steps)), 30n))
        : Math.max(price.min_credits, formulaMicro(decimalOf(price.k), size.width * size.height - price.offset, size.steps));
    const withLoras = perImage + price.lora * (size.loras ?? 0);
    return { per_image: withLoras, samples, total: withLoras * samples };
  }

  /** What an upscale request costs: flat per image. */
  upscale(engineId: string, opts: { samples?: number } = {}): Cost {
    const samples = opts.samples ?? 1;
    if (!Number.isSafeInteger(samples) || samples < 1) throw new RangeError(`samples must be a positive integer (got ${samples})`);
    const perImage = this.engine(engineId).upscale;
    return { per_image: perImage, samples, total: perImage * samples };
  }
}

/**
 * round(k * 10^6 * pixels * steps / 30) in micro-credits, exactly, halves rounded up; 0 when the pixel
 * count is under the offset (the minimum then applies).
 */
function formulaMicro(k: Decimal, pixels: number, steps: number): number {
  const shift = k.exponent + 6;
  let num = k.mantissa * BigInt(pixels) * BigInt(steps);
  let den = 30n;
  if (shift >= 0) num *= 10n ** BigInt(shift);
  else den *= 10n ** BigInt(-shift);
  if (num <= 0n) return 0;
  return roundHalfUp(num, den);
}

/** num / den in whole micro-credits, halves rounded up. */
function roundHalfUp(num: bigint, den: bigint): number {
  const rounded = (2n * num + den) / (2n * den);
  if (rounded > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('price is too large');
  return Number(rounded);
}

function decimalOf(k: number): Decimal {
  const d = parseDecimal(k);
  if (!d) throw new InvalidAmountError(`k must be a finite number (got ${k})`);
  return d;
}

function readPriceFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PriceFileError(`Invalid price file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PriceFileError(`Invalid price file ${path}: not valid JSON (${(err as Error).message})`);
  }
}

function validate(value: unknown, name: string): PriceFile {
  const parsed = PriceFile.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue.path.join('.') || '(root)';
  throw new PriceFileError(`Invalid price file ${name}: ${field}: ${issue.message}`);
}
