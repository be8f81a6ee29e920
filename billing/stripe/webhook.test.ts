import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { shouldApply } from "./webhook.ts";

describe("shouldApply", () => {
  const apply = (current: [string, number] | null, incoming: [string, number]) =>
    shouldApply(current && { status: current[0], at: current[1] }, { status: incoming[0], at: incoming[1] });

  it("applies the first status deck hears of, and newer ones after it", () => {
    assert.equal(apply(null, ["open", 10]), true);
    assert.equal(apply(["open", 10], ["paid", 20]), true);
    assert.equal(apply(["open", 10], ["uncollectible", 20]), true);
    assert.equal(apply(["uncollectible", 20], ["paid", 30]), true, "an uncollectible invoice can still be paid");
    assert.equal(apply(["active", 10], ["past_due", 20]), true);
  });

  it("never lets an older event override a newer one", () => {
    assert.equal(apply(["paid", 20], ["open", 10]), false);
    assert.equal(apply(["open", 20], ["uncollectible", 10]), false);
    assert.equal(apply(["past_due", 20], ["active", 10]), false);
  });

  it("never moves a paid or void invoice, or an ended subscription, to another status, however new the event", () => {
    assert.equal(apply(["paid", 10], ["open", 20]), false);
    assert.equal(apply(["void", 10], ["paid", 20]), false);
    assert.equal(apply(["paid", 10], ["void", 20]), false);
    assert.equal(apply(["canceled", 10], ["active", 20]), false);
    assert.equal(apply(["uncollectible", 10], ["open", 20]), false, "an invoice never returns to open");
  });

  it("within one second, moves forward but never back to open", () => {
    assert.equal(apply(["open", 10], ["paid", 10]), true);
    assert.equal(apply(["uncollectible", 10], ["open", 10]), false);
  });
});
