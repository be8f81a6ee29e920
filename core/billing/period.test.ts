import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseInstant, toMonthlyPeriod } from "./period.ts";

describe("parseInstant", () => {
  it("reads every ISO form the ledger may hold to the same millisecond Date.parse does", () => {
    for (const iso of ["2027-01-05T13:04:05Z", "2027-01-05T13:04:05.123Z", "2028-02-29T23:59:59.999Z", "2027-01-05T15:04:05+02:00", "2027-01-05T13:04:05.5Z", "2027-01-05T13:04:05.123456Z"]) {
      assert.equal(parseInstant(iso, "t"), Date.parse(iso), iso);
    }
    fc.assert(fc.property(fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("2999-12-31T23:59:59Z"), noInvalidDate: true }), (d) => {
      assert.equal(parseInstant(d.toISOString(), "t"), d.getTime());
      assert.equal(parseInstant(d.toISOString().replace(/\.\d{3}Z$/, "Z"), "t"), Math.floor(d.getTime() / 1000) * 1000);
    }));
  });

  it("refuses text that is not an instant with a zone", () => {
    for (const bad of ["2027-02-30T00:00:00Z", "2027-13-01T00:00:00Z", "2027-01-05T24:00:00Z", "2027-01-05T13:04:05", "yesterday", "2027-01-05T1a:04:05Z"]) {
      assert.throws(() => parseInstant(bad, "ledger entry e1"), /ledger entry e1: .* is not an ISO 8601 instant with a zone/, bad);
    }
  });
});

describe("toMonthlyPeriod", () => {
  it("is the calendar month in UTC, February of a leap year included", () => {
    assert.deepEqual(toMonthlyPeriod("2028-02-29T23:59:59Z"), { start: "2028-02-01T00:00:00.000Z", end: "2028-03-01T00:00:00.000Z" });
    assert.deepEqual(toMonthlyPeriod("2027-12-31T23:30:00-01:00"), { start: "2028-01-01T00:00:00.000Z", end: "2028-02-01T00:00:00.000Z" });
  });
});
