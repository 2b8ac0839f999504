import { describe, expect, it } from 'vitest';
import { creditsString, displayCredits, InvalidAmountError, parseCredits, toCredits } from '../src/index';

describe('parseCredits', () => {
  it.each([
    { input: '100', micro: 100_000_000 },
    { input: 100, micro: 100_000_000 },
    { input: '0.1', micro: 100_000 },
    { input: 0.3, micro: 300_000 },
    { input: '9.8', micro: 9_800_000 },
    { input: '.5', micro: 500_000 },
    { input: '0.000001', micro: 1 },
    { input: 1e-6, micro: 1 },
    { input: '2.5e2', micro: 250_000_000 },
    { input: ' 7 ', micro: 7_000_000 },
    { input: '1.100000', micro: 1_100_000 },
  ])('reads $input as $micro micro-credits', ({ input, micro }) => {
    expect(parseCredits(input)).toBe(micro);
  });

  it('reads negative amounts only when allowed, and zero only when allowed', () => {
    expect(parseCredits('-1.5', { allowNegative: true })).toBe(-1_500_000);
    expect(() => parseCredits('-1.5')).toThrow('amount must not be negative (got "-1.5")');
    expect(parseCredits('0', { allowZero: true })).toBe(0);
    expect(() => parseCredits(0)).toThrow('amount must not be zero (got 0)');
  });

  it.each([
    { input: '0.0000001', message: 'at most 6 decimal places (got "0.0000001")' },
    // 0.1 + 0.2 is 0.30000000000000004 in floating point: refused, not silently rounded.
    { input: 0.1 + 0.2, message: 'at most 6 decimal places (got 0.30000000000000004)' },
    { input: 'ten', message: 'a decimal number of credits (got "ten")' },
    { input: '', message: 'a decimal number of credits' },
    { input: '1,5', message: 'a decimal number of credits' },
    { input: Number.NaN, message: 'a decimal number of credits' },
    { input: Number.POSITIVE_INFINITY, message: 'a decimal number of credits' },
    { input: '1e30', message: 'too large' },
  ])('refuses $input', ({ input, message }) => {
    expect(() => parseCredits(input)).toThrow(InvalidAmountError);
    expect(() => parseCredits(input)).toThrow(message);
  });
});

describe('formatting', () => {
  it.each([
    { micro: 9_800_000, number: 9.8, text: '9.8', shown: '9.80' },
    { micro: 200_053, number: 0.200053, text: '0.200053', shown: '0.20' },
    { micro: 1_898_746, number: 1.898746, text: '1.898746', shown: '1.90' },
    { micro: 1, number: 0.000001, text: '0.000001', shown: '0.00' },
    { micro: 5_000, number: 0.005, text: '0.005', shown: '0.01' },
    { micro: -1_500_000, number: -1.5, text: '-1.5', shown: '-1.50' },
    { micro: 0, number: 0, text: '0', shown: '0.00' },
    { micro: 25_000_000, number: 25, text: '25', shown: '25.00' },
  ])('$micro micro-credits: $number, "$text", shown "$shown"', ({ micro, number, text, shown }) => {
    expect(toCredits(micro)).toBe(number);
    expect(creditsString(micro)).toBe(text);
    expect(displayCredits(micro)).toBe(shown);
    expect(parseCredits(text, { allowNegative: true, allowZero: true })).toBe(micro);
  });

  it('refuses non-integers', () => {
    expect(() => toCredits(0.5)).toThrow('micro-credits must be a safe integer (got 0.5)');
  });
});
