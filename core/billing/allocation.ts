import { compare, roundDown, subtract, toRational, type Rational } from "./rational.ts";

/**
 * Splits `cents` across shares in proportion to `weights`, in whole cents that add up to `cents`
 * exactly (largest remainder): each share gets the floor of its exact part, and the cents left over
 * go one each to the largest fractional parts, ties to the earlier share. Callers order the shares
 * canonically (apps by name) so the split never depends on the order usage arrived in.
 */
export function allocateCents(cents: bigint, weights: readonly Rational[]): bigint[] {
  const total = weights.reduce((s, w) => toRational(s.n * w.d + w.n * s.d, s.d * w.d), toRational(0n));
  if (cents === 0n || total.n === 0n) return weights.map(() => 0n);
  if (cents < 0n) throw new RangeError("only a charge (cents ≥ 0) is split");
  if (weights.some((w) => w.n < 0n)) throw new RangeError("a share cannot have a negative weight");
  const exact = weights.map((w) => toRational(cents * w.n * total.d, w.d * total.n));
  const shares = exact.map(roundDown);
  let left = cents - shares.reduce((s, x) => s + x, 0n);
  const order = exact
    .map((e, i) => ({ i, rest: subtract(e, toRational(shares[i]!)) }))
    .sort((a, b) => compare(b.rest, a.rest) || a.i - b.i);
  for (const { i } of order) {
    if (left === 0n) break;
    shares[i]! += 1n;
    left -= 1n;
  }
  return shares;
}
