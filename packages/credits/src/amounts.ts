/**
 * Money at the edges. Inside sdq every amount is an integer number of micro-credits (1 credit =
 * 1,000,000 micro-credits); decimals exist only where a person reads or types them: JSON answers
 * (`{"credits": 9.8}`), admin input (`{"amount": 100}`, `sdq credits grant ACCOUNT 0.5`) and the price
 * file. Decimals are parsed as text, digit by digit, so 0.1 + 0.2 never becomes 0.30000000000000004
 * micro-credits.
 */

export const MICRO_PER_CREDIT = 1_000_000;
const MICRO_DIGITS = 6;

/** An amount that is not a usable number of credits (bad admin input, bad price file value). */
export class InvalidAmountError extends Error {
  readonly code = 'invalid_amount';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidAmountError';
  }
}

/** An exact decimal: mantissa x 10^exponent. */
export interface Decimal {
  mantissa: bigint;
  exponent: number;
}

const DECIMAL = /^([+-])?(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;

/**
 * Reads a decimal written as text ("0.2", "-1.5", "2.16e-6") exactly. A JS number is read through
 * String(n), its shortest round-trip form: 0.1 reads as one tenth, not as the binary double nearest it.
 */
export function parseDecimal(input: string | number): Decimal | undefined {
  if (typeof input === 'number' && !Number.isFinite(input)) return undefined;
  const m = DECIMAL.exec(String(input).trim());
  if (!m) return undefined;
  const [, sign, int = '', frac = '', onlyFrac = '', exp = '0'] = m;
  const fraction = frac || onlyFrac;
  const mantissa = BigInt(`${int}${fraction}` || '0');
  return { mantissa: sign === '-' ? -mantissa : mantissa, exponent: Number(exp) - fraction.length };
}

/**
 * Micro-credits from a decimal number of credits typed by a person or read from JSON: "100", 0.5,
 * "0.000001". More than 6 decimal places, a non-number, or a negative (unless allowed) is an
 * InvalidAmountError whose message gives the value and what was expected.
 */
export function parseCredits(input: string | number, opts: { allowNegative?: boolean; allowZero?: boolean } = {}): number {
  const shown = JSON.stringify(input);
  const d = parseDecimal(input);
  if (!d) throw new InvalidAmountError(`amount must be a decimal number of credits (got ${shown})`);
  const shift = d.exponent + MICRO_DIGITS;
  let micro: bigint;
  if (shift >= 0) {
    micro = d.mantissa * 10n ** BigInt(shift);
  } else {
    const divisor = 10n ** BigInt(-shift);
    if (d.mantissa % divisor !== 0n) throw new InvalidAmountError(`amount must have at most ${MICRO_DIGITS} decimal places (got ${shown})`);
    micro = d.mantissa / divisor;
  }
  if (micro > BigInt(Number.MAX_SAFE_INTEGER) || micro < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidAmountError(`amount is too large (got ${shown})`);
  }
  if (micro < 0n && !opts.allowNegative) throw new InvalidAmountError(`amount must not be negative (got ${shown})`);
  if (micro === 0n && !opts.allowZero) throw new InvalidAmountError(`amount must not be zero (got ${shown})`);
  return Number(micro);
}

/**
 * Credits as a JSON number: 9_800_000 -> 9.8. Dividing an integer by 10^6 gives the double nearest the
 * exact decimal, and JSON writes a double in its shortest round-trip form, so the answer shows exactly
 * the decimal (up to 2^53 micro-credits, far beyond any balance).
 */
export function toCredits(micro: number): number {
  assertMicro(micro);
  return micro / MICRO_PER_CREDIT;
}

/** Credits as exact text with no trailing zeros: 200_053 -> "0.200053", -1_500_000 -> "-1.5". */
export function creditsString(micro: number): string {
  assertMicro(micro);
  const sign = micro < 0 ? '-' : '';
  const abs = Math.abs(micro);
  const whole = Math.floor(abs / MICRO_PER_CREDIT);
  const frac = String(abs % MICRO_PER_CREDIT).padStart(MICRO_DIGITS, '0').replace(/0+$/, '');
  return `${sign}${whole}${frac ? `.${frac}` : ''}`;
}

/**
 * Credits rounded for display, half away from zero, with a fixed number of places: 200_053 -> "0.20",
 * 1_898_746 -> "1.90" (as Stability shows prices). Default 2 places.
 */
export function displayCredits(micro: number, fractionDigits = 2): string {
  assertMicro(micro);
  if (!Number.isInteger(fractionDigits) || fractionDigits < 0 || fractionDigits > MICRO_DIGITS) {
    throw new RangeError(`fractionDigits must be an integer from 0 to ${MICRO_DIGITS} (got ${fractionDigits})`);
  }
  const unit = 10 ** (MICRO_DIGITS - fractionDigits);
  const abs = Math.abs(micro);
  const rounded = Math.floor((abs + unit / 2) / unit) * unit;
  const whole = Math.floor(rounded / MICRO_PER_CREDIT);
  const frac = String(rounded % MICRO_PER_CREDIT).padStart(MICRO_DIGITS, '0').slice(0, fractionDigits);
  return `${micro < 0 && rounded > 0 ? '-' : ''}${whole}${fractionDigits ? `.${frac}` : ''}`;
}

function assertMicro(micro: number): void {
  if (!Number.isSafeInteger(micro)) throw new InvalidAmountError(`micro-credits must be a safe integer (got ${micro})`);
}
