import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { advanceCursor, planUsageEvent, toBillingUnits, toUsageIdentifier, type CursorState } from "./usage-events.ts";

describe("ledger entries as Stripe meter events", () => {
  it("converts each ledger unit into the unit its Stripe price is in", () => {
    assert.equal(toBillingUnits("build_seconds", "90", "2027-01-10T12:00:00.000Z"), 1.5);
    assert.equal(toBillingUnits("bandwidth_bytes", "2500000000", "2027-01-10T12:00:00.000Z"), 2.5);
    // 3 GB held every hour of January (31 × 24 = 744 hours) is 3 GB-month; one hour of it is 3/744.
    assert.equal(toBillingUnits("storage_byte_hours", String(3e9 * 744), "2027-01-31T23:00:00.000Z"), 3);
    assert.equal(toBillingUnits("storage_byte_hours", "3000000000", "2027-01-05T07:00:00.000Z"), 3 / 744);
    // February 2027 has 28 days, 672 hours; a leap February 29 days.
    assert.equal(toBillingUnits("storage_byte_hours", String(2e9 * 672), "2027-02-14T00:00:00.000Z"), 2);
    assert.equal(toBillingUnits("domain_days", "29", "2028-02-29T00:00:00.000Z"), 1);
    assert.equal(toBillingUnits("domain_days", "15", "2027-04-01T00:00:00.000Z"), 0.5);
    assert.throws(() => toBillingUnits("cpu_seconds" as never, "1", "2027-01-01T00:00:00.000Z"), /unknown ledger meter "cpu_seconds"/);
  });

  it("identifies an event by its ledger key, hashed only when longer than Stripe takes", () => {
    assert.equal(toUsageIdentifier("build:42"), "build:42");
    const long = `bw:${"x".repeat(120)}:7:2027-01-01T00:00:00.000Z`;
    const id = toUsageIdentifier(long);
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    assert.ok(id.length <= 100);
    assert.equal(toUsageIdentifier(long), id, "the same key, the same identifier");
    assert.notEqual(toUsageIdentifier(`${long}x`), id);
  });

  it("sends an entry with its customer and the time it happened, and not one older than Stripe takes", () => {
    const now = new Date("2027-03-01T12:00:00Z");
    const entry = { key: "build:7", meter: "build_seconds", quantity: "30", customerId: "cus_1" };
    assert.deepEqual(planUsageEvent({ ...entry, at: "2027-02-27T10:00:05.000Z" }, now), {
      kind: "send",
      event: { identifier: "build:7", meter: "build_minutes", customerId: "cus_1", value: 0.5, timestamp: Date.parse("2027-02-27T10:00:05Z") / 1000 },
    });
    // 35 days before 1 March 12:00 is 25 January 12:00; an hour is kept for clocks and requests in flight.
    assert.equal(planUsageEvent({ ...entry, at: "2027-01-25T13:30:00.000Z" }, now).kind, "send", "35 days old less an hour and a half");
    assert.deepEqual(planUsageEvent({ ...entry, at: "2027-01-25T12:30:00.000Z" }, now), { kind: "too_old" }, "35 days old less half an hour");
  });
});

describe("the usage reporting cursor", () => {
  const HOUR = 3_600_000;
  const t0 = Date.parse("2027-01-10T00:00:00Z");
  const progress = { settleMs: HOUR, blockedAtId: null };

  it("does not move on the first round, which only notes the newest id", () => {
    assert.deepEqual(advanceCursor({ throughId: 0, horizonId: 0, horizonAt: null }, { ...progress, now: t0, headId: 120, readThroughId: 120 }), {
      throughId: 0, horizonId: 120, horizonAt: t0,
    });
  });

  it("passes an id it did not see only once that id was handed out an hour ago", () => {
    const c: CursorState = { throughId: 0, horizonId: 120, horizonAt: t0 };
    // Half an hour later: 120 ids might still be in transactions that have not committed.
    assert.deepEqual(advanceCursor(c, { ...progress, now: t0 + HOUR / 2, headId: 200, readThroughId: 200 }), c);
    // An hour later: every id up to 120 was committed (or never will be); the newest id now is noted.
    assert.deepEqual(advanceCursor(c, { ...progress, now: t0 + HOUR, headId: 200, readThroughId: 200 }), { throughId: 120, horizonId: 200, horizonAt: t0 + HOUR });
  });

  it("stops before an entry Stripe could not take, and before what the round did not read", () => {
    const c: CursorState = { throughId: 10, horizonId: 120, horizonAt: t0 };
    const later = t0 + 2 * HOUR;
    assert.equal(advanceCursor(c, { ...progress, now: later, headId: 300, readThroughId: 300, blockedAtId: 57 }).throughId, 56);
    assert.equal(advanceCursor(c, { ...progress, now: later, headId: 300, readThroughId: 90 }).throughId, 90);
    assert.equal(advanceCursor(c, { ...progress, now: later, headId: 300, readThroughId: 300, blockedAtId: 5 }).throughId, 10, "never back");
  });
});
