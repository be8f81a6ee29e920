import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildUptimeReport, formatUptimeDuration, formatUptimePercent, uptimePercent, uptimePeriod } from "../../ops/uptime.ts";

/** How `uptime APP` turns daily counts and incidents into what users read (ops/uptime.ts). */
describe("the uptime report", () => {
  it("cuts the percentage to 3 decimals, so 100.000% means not one failed check", () => {
    assert.equal(formatUptimePercent(uptimePercent(2880, 0)), "100.000%");
    assert.equal(formatUptimePercent(uptimePercent(100_000, 1)), "99.999%");
    assert.equal(formatUptimePercent(uptimePercent(3, 1)), "66.666%");
    assert.equal(formatUptimePercent(uptimePercent(100, 71)), "29.000%");
    assert.equal(formatUptimePercent(uptimePercent(0, 0)), "-");
  });

  it("shows the last N UTC days, newest first, none before the app was created", () => {
    const now = new Date("2025-03-02T10:00:00Z");
    assert.deepEqual(uptimePeriod(now, 90, "2025-02-28T23:59:00Z"), ["2025-03-02", "2025-03-01", "2025-02-28"]);
    assert.deepEqual(uptimePeriod(now, 2, "2024-01-01T00:00:00Z"), ["2025-03-02", "2025-03-01"]);
    assert.equal(uptimePeriod(now, 400, "2020-01-01T00:00:00Z").length, 400);
  });

  it("totals the period over the days with checks and times open incidents until now", () => {
    const r = buildUptimeReport({
      app: "shop", days: 90, period: ["2025-03-02", "2025-03-01", "2025-02-28"],
      rows: [{ day: "2025-03-02", checks: 100, failures: 4 }, { day: "2025-02-28", checks: 100, failures: 0 }],
      traffic: [{ day: "2025-03-02", requests: 2000, failed: 3 }],
      incidents: [
        { id: 2, source: "probe", location: "", startedAt: "2025-03-02T09:50:00.000Z", endedAt: null, cause: "HTTP 502" },
        { id: 1, source: "probe", location: "edge-1:8080", startedAt: "2025-03-02T08:00:00.000Z", endedAt: "2025-03-02T08:01:30.000Z", cause: "connection refused" },
      ],
      now: new Date("2025-03-02T10:00:00Z"),
    });
    assert.deepEqual(r.daily.map((d) => formatUptimePercent(d.uptimePercent)), ["96.000%", "-", "100.000%"]);
    assert.equal(formatUptimePercent(r.uptimePercent), "98.000%");
    assert.deepEqual(r.daily.map((d) => formatUptimePercent(d.availabilityPercent)), ["99.850%", "-", "-"], "requests served without a 5xx, per day");
    assert.deepEqual([r.requests, r.failedRequests, formatUptimePercent(r.availabilityPercent)], [2000, 3, "99.850%"]);
    assert.deepEqual(r.incidents.map((i) => [i.endedAt, formatUptimeDuration(i.durationSeconds), i.cause]), [[null, "10m 0s", "HTTP 502"], ["2025-03-02T08:01:30.000Z", "1m 30s", "connection refused"]]);
  });

  it("writes durations the way people say them", () => {
    assert.deepEqual([45, 190, 7500, 363_600].map(formatUptimeDuration), ["45s", "3m 10s", "2h 5m", "4d 5h"]);
  });
});
