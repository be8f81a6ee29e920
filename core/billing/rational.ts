/**
 * Exact fractions over BigInt for rating. Money must not drift: 61 build seconds are 61/60 minutes,
 * a plan fee is prorated by seconds over a 2,678,400-second month, and a price can be a fraction of a
 * cent. Every step stays an exact fraction and becomes whole cents only once, at the end of a line.
 * (No fraction library is a dependency of deck; the handful of operations rating needs are below.)
 */

/** n/d in lowest terms, d > 0. */
export interface Rational {
  readonly n: bigint;
  readonly d: bigint;
}

function findGcd(a: bigint, b: bigint): bigint {
  if (a < 0n) a = -a;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/** The fraction n/d in lowest terms. */
export function toRational(n: bigint | number, d: bigint | number = 1n): Rational {
  let num = BigInt(n);
  let den = BigInt(d);
  if (den === 0n) throw new RangeError("a fraction with denominator 0");
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  if (den === 1n) return { n: num, d: 1n };
  const g = findGcd(num, den);
  return g > 1n ? { n: num / g, d: den / g } : { n: num, d: den };
}

export const ZERO: Rational = { n: 0n, d: 1n };

export function add(a: Rational, b: Rational): Rational {
  if (a.d === b.d) return toRational(a.n + b.n, a.d);
  return toRational(a.n * b.d + b.n * a.d, a.d * b.d);
}

export function subtract(a: Rational, b: Rational): Rational {
  return add(a, { n: -b.n, d: b.d });
}

export function multiply(a: Rational, b: Rational): Rational {
  return toRational(a.n * b.n, a.d * b.d);
}

export function divide(a: Rational, b: Rational): Rational {
  return toRational(a.n * b.d, a.d * b.n);
}

/** -1, 0 or 1 as a is below, equal to or above b. */
export function compare(a: Rational, b: Rational): -1 | 0 | 1 {
  const l = a.n * b.d;
  const r = b.n * a.d;
  return l < r ? -1 : l > r ? 1 : 0;
}

export function isZero(a: Rational): boolean {
  return a.n === 0n;
}

/** The largest integer at or below a. */
export function roundDown(a: Rational): bigint {
  const q = a.n / a.d;
  return a.n < 0n && q * a.d !== a.n ? q - 1n : q;
}

/** The nearest integer, halves going up (toward +∞): 2.5 → 3, 2.4999 → 2, -2.5 → -2. */
export function roundHalfUp(a: Rational): bigint {
  return roundDown(add(a, { n: 1n, d: 2n }));
}

/**
 * The exact value of a decimal written as text or as a JavaScript number: 0.1 is 1/10 (the number's
 * shortest decimal form is what an admin typed), 1e-7 is 1/10,000,000. Refuses negatives, NaN and ∞.
 */
export function parseDecimal(value: number | string): Rational {
  const text = typeof value === "number" ? String(value) : value.trim();
  const m = /^(\d+)(?:\.(\d*))?(?:e([+-]?\d+))?$/i.exec(text);
  if (!m) throw new RangeError(`not a non-negative decimal: ${text}`);
  const fraction = m[2] ?? "";
  const exponent = Number(m[3] ?? 0) - fraction.length;
  const digits = BigInt(m[1] + fraction);
  return exponent >= 0 ? toRational(digits * 10n ** BigInt(exponent)) : toRational(digits, 10n ** BigInt(-exponent));
}

/**
 * a as a decimal with at most `places` digits after the point, the last rounded half-up and trailing
 * zeros dropped: 1/3 → "0.333333", 5/2 → "2.5", 100 → "100". Used to show quantities, never to compute.
 */
export function formatDecimal(a: Rational, places = 6): string {
  const scale = 10n ** BigInt(places);
  const scaled = roundHalfUp(multiply(a, toRational(scale)));
  const negative = scaled < 0n;
  const abs = negative ? -scaled : scaled;
  const whole = abs / scale;
  const fraction = (abs % scale).toString().padStart(places, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

/** A whole number of cents as a JavaScript number, which every invoice amount fits in. */
export function toSafeNumber(a: bigint): number {
  if (a > BigInt(Number.MAX_SAFE_INTEGER) || a < -BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${a} is beyond what an invoice amount can hold`);
  return Number(a);
}
