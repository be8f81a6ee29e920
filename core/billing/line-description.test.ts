import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_CATALOGUE } from "./catalogue.ts";
import { describeLine, formatDollars } from "./line-description.ts";
import type { UsageEntry } from "./ledger-usage.ts";
import { rateInvoice } from "./rating.ts";

const JANUARY = { start: "2027-01-01T00:00:00Z", end: "2027-02-01T00:00:00Z" };
const makeEntry = (id: string, meter: UsageEntry["meter"], quantity: number, at = "2027-01-10T00:00:00Z"): UsageEntry => ({ id, orgId: 1, app: "web", meter, quantity, at });

describe("describeLine", () => {
  it("says what each line of a whole month charges for", () => {
    const inv = rateInvoice({
      orgId: 1, catalogue: DEFAULT_CATALOGUE, period: JANUARY, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }],
      // 2234.5 min built (1234.5 over: 1234.5¢ rounds half-up to 1235), 400 GB served, 1 domain for 31 days:
      // 2000 + 1235 + 500 = 3735; the first credit takes 2000, the second the 1735 left.
      entries: [makeEntry("b", "build_seconds", 134_070), makeEntry("n", "bandwidth_bytes", 400e9), makeEntry("d", "domain_days", 31)],
      credits: [{ id: "c", cents: 2000, reason: "outage on 3 Jan" }, { id: "c2", cents: 5000, reason: "welcome offer" }],
    });
    assert.deepEqual(inv.lines.map(describeLine), [
      "Pro plan, monthly fee",
      "Build minutes over the Pro allowance: 1,234.5 min × $0.01",
      "Bandwidth within the Pro allowance: 400 of 1,000 GB",
      "Storage on the Pro plan: 0 GB-month",
      "Custom domains on the Pro plan: 1 domain-month × $5.00",
      "Credit: outage on 3 Jan",
      "Credit: welcome offer ($17.35 of $50.00 used, $32.65 left)",
    ]);
  });

  it("names the stretch of the month a plan change splits off", () => {
    const inv = rateInvoice({
      orgId: 1, catalogue: DEFAULT_CATALOGUE, period: JANUARY,
      planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }, { plan: "business", from: "2027-01-11T12:00:00Z" }],
      entries: [makeEntry("b", "build_seconds", 600_000, "2027-01-20T00:00:00Z")],
    });
    const texts = inv.lines.map(describeLine);
    assert.equal(texts[0], "Pro plan (1 Jan 2027 to 11 Jan 2027 12:00 UTC), 10.5 of 31 days of the $20.00 monthly fee");
    assert.equal(texts[1], "Build minutes within the Pro allowance (1 Jan 2027 to 11 Jan 2027 12:00 UTC): 0 of 338.709677 min");
    assert.equal(texts[5], "Business plan (11 Jan 2027 12:00 UTC to 1 Feb 2027), 20.5 of 31 days of the $99.00 monthly fee");
    assert.equal(texts[6], "Build minutes, unlimited on the Business plan (11 Jan 2027 12:00 UTC to 1 Feb 2027): 10,000 min");
  });
});

describe("formatDollars", () => {
  it("shows cents, and fractions of a cent when a unit price has them", () => {
    assert.deepEqual([1, 10, 500, 123_456, 0.5, 0.25, -150].map(formatDollars), ["$0.01", "$0.10", "$5.00", "$1,234.56", "$0.005", "$0.0025", "-$1.50"]);
  });
});
