import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { judgeTraffic } from "./traffic.ts";

const at = "2026-12-07T10:00:00.000Z";

describe("passive availability from real traffic", () => {
  it("opens when most of a minute's requests fail, and not on a handful of requests", () => {
    assert.deepEqual(judgeTraffic({ requests: 40, failed: 30, recentRequests: 200 }, false, at), { kind: "open", startedAt: at, cause: "30 of 40 requests in a minute answered 5xx" });
    assert.equal(judgeTraffic({ requests: 9, failed: 9, recentRequests: 9 }, false, at), null, "too few requests to judge");
    assert.equal(judgeTraffic({ requests: 40, failed: 19, recentRequests: 40 }, false, at), null, "under half failed");
  });

  it("ends with hysteresis: only once errors are rare again, or after five quiet minutes", () => {
    assert.equal(judgeTraffic({ requests: 40, failed: 10, recentRequests: 400 }, true, at), null, "25% still failing keeps it open");
    assert.deepEqual(judgeTraffic({ requests: 40, failed: 3, recentRequests: 400 }, true, at), { kind: "close", endedAt: at });
    assert.equal(judgeTraffic({ requests: 0, failed: 0, recentRequests: 12 }, true, at), null, "a quiet minute after failures proves nothing");
    assert.deepEqual(judgeTraffic({ requests: 0, failed: 0, recentRequests: 0 }, true, at), { kind: "close", endedAt: at });
  });
});
