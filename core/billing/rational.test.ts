import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatDecimal, parseDecimal, roundHalfUp, toRational } from "./rational.ts";

describe("exact decimals", () => {
  it("reads what an admin typed exactly and rounds halves up", () => {
    assert.deepEqual(parseDecimal(0.1), toRational(1, 10));
    assert.deepEqual(parseDecimal(1e-7), toRational(1, 10_000_000));
    assert.deepEqual(parseDecimal("2.50"), toRational(5, 2));
    assert.equal(roundHalfUp(toRational(5, 2)), 3n);
    assert.equal(roundHalfUp(toRational(249_999, 100_000)), 2n);
    assert.equal(formatDecimal(toRational(1, 3)), "0.333333");
    assert.equal(formatDecimal(toRational(2, 3)), "0.666667");
    assert.equal(formatDecimal(toRational(100)), "100");
  });
});
