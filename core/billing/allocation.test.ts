import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { allocateCents } from "./allocation.ts";
import { toRational } from "./rational.ts";

describe("allocateCents", () => {
  it("splits by largest remainder, ties to the earlier share", () => {
    assert.deepEqual(allocateCents(100n, [1, 1, 1].map((n) => toRational(n))), [34n, 33n, 33n]);
    assert.deepEqual(allocateCents(387n, [toRational(2), toRational(5)]), [111n, 276n]);
    assert.deepEqual(allocateCents(5n, [toRational(0), toRational(0)]), [0n, 0n]);
  });

  it("always adds up to the amount, each share within a cent of its exact part", () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 10n ** 9n }), fc.array(fc.bigInt({ min: 0n, max: 10n ** 15n }), { minLength: 1, maxLength: 12 }), (cents, weights) => {
      const shares = allocateCents(cents, weights.map((w) => toRational(w)));
      const total = weights.reduce((a, b) => a + b, 0n);
      if (total === 0n) return assert.ok(shares.every((s) => s === 0n));
      assert.equal(shares.reduce((a, b) => a + b, 0n), cents);
      for (const [i, s] of shares.entries()) {
        const exact = (cents * weights[i]!) / total;
        assert.ok(s === exact || s === exact + 1n);
      }
    }));
  });
});
