import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  alertNoticeKey, formatAlertRule, INITIAL_ALERT_STATE, noticeDue, noticeSent, observeAlert, parseAlertRule, stepAlert,
  type AlertRuleSpec, type AlertState, type NoticeKind,
} from "./alerts.ts";
import { LATENCY_BOUNDS, type MetricSample } from "./metrics.ts";

const rule = (text: string): AlertRuleSpec => {
  const r = parseAlertRule(text);
  assert.ok(r.ok, r.ok ? "" : r.message);
  return r.rule;
};

describe("alert rules as users type them", () => {
  const cases: [string, AlertRuleSpec, string][] = [
    ["down", { kind: "down", threshold: 0, forSeconds: 0 }, "down"],
    ["crash_loop", { kind: "crash_loop", threshold: 3, forSeconds: 0, windowSeconds: 300 }, "crash_loop"],
    ["crash_loop>=5 in 10m", { kind: "crash_loop", threshold: 5, forSeconds: 0, windowSeconds: 600 }, "crash_loop>=5 in 10m"],
    ["crash_loop>4", { kind: "crash_loop", threshold: 5, forSeconds: 0, windowSeconds: 300 }, "crash_loop>=5 in 5m"],
    ["http_5xx>5% for 5m", { kind: "http_5xx", threshold: 5, forSeconds: 300, minRequests: 20 }, "http_5xx>5% for 5m"],
    ["http_5xx > 2.5%  for 90s min 100", { kind: "http_5xx", threshold: 2.5, forSeconds: 90, minRequests: 100 }, "http_5xx>2.5% for 90s min 100"],
    ["p95>800ms for 10m", { kind: "p95", threshold: 800, forSeconds: 600, minRequests: 20 }, "p95>800ms for 10m"],
    ["p95>1.5s for 1h", { kind: "p95", threshold: 1500, forSeconds: 3600, minRequests: 20 }, "p95>1500ms for 1h"],
    ["memory>90% for 5m", { kind: "memory", threshold: 90, forSeconds: 300 }, "memory>90% for 5m"],
    ["memory>90%", { kind: "memory", threshold: 90, forSeconds: 300 }, "memory>90% for 5m"],
  ];
  for (const [text, spec, printed] of cases) {
    it(`reads "${text}" and prints it as "${printed}"`, () => {
      assert.deepEqual(rule(text), spec);
      assert.equal(formatAlertRule(spec), printed);
      assert.deepEqual(rule(printed), spec);
    });
  }

  const bad: [string, RegExp][] = [
    ["cpu>50%", /unknown rule "cpu>50%"/],
    ["http_5xx>5 for 5m", /http_5xx is a percentage: http_5xx>5%/],
    ["p95>800 for 5m", /p95 is a latency: p95>800ms or p95>1.5s/],
    ["memory>120% for 5m", /above 0 and below 100/],
    ["memory>90% for 5 minutes", /`for` takes a duration/],
    ["down for 5m", /down takes nothing after it/],
    ["crash_loop>=3 within 5m", /the window is written `in 10m`/],
    ["", /unknown rule ""/],
  ];
  for (const [text, why] of bad) {
    it(`refuses "${text}" in one line naming the accepted forms`, () => {
      const r = parseAlertRule(text);
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.match(r.message, why);
      assert.match(r.message, /rules look like: down, crash_loop, crash_loop>=5 in 10m, http_5xx>5% for 5m, p95>800ms for 10m, memory>90% for 5m$/);
      assert.ok(!r.message.includes("\n"));
    });
  }
});

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);
const sample = (at: number, s: Partial<MetricSample>): MetricSample => ({
  at, seconds: 10, process: "", release: 3, cpuSeconds: 0.5, rssBytes: null, memoryLimitBytes: null, restarts: 0, connections: 1,
  requests: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null, ...s,
});

describe("what a rule observes in an app's samples", () => {
  it("crash_loop counts restarts in its window only", () => {
    const samples = [sample(T0 - 400_000, { restarts: 5 }), sample(T0 - 200_000, { restarts: 2 }), sample(T0 - 20_000, { restarts: 2 })];
    assert.deepEqual(observeAlert(rule("crash_loop"), samples, T0, { down: false }), { value: 4, words: "4 restarts in 5m" });
  });

  it("http_5xx is the share of 5xx answers, and says nothing under its minimum of requests", () => {
    const busy = [sample(T0 - 20_000, { requests: 600, status2xx: 560, status5xx: 40 }), sample(T0 - 10_000, { requests: 600, status2xx: 560, status5xx: 44 })];
    const o = observeAlert(rule("http_5xx>5% for 5m"), busy, T0, { down: false });
    assert.equal(o.value, 7);
    assert.equal(o.words, "7% of 1,200 requests answered 5xx in 1m");
    const quiet = [sample(T0 - 10_000, { requests: 12, status5xx: 12 })];
    assert.deepEqual(observeAlert(rule("http_5xx>5% for 5m"), quiet, T0, { down: false }), { value: null, words: "12 requests in 1m, too few to judge" });
  });

  it("p95 comes from the summed latency histogram", () => {
    const latency = LATENCY_BOUNDS.map(() => 0).concat(0);
    latency[LATENCY_BOUNDS.indexOf(1)] = 100; // every request took 0.5–1 s
    const o = observeAlert(rule("p95>800ms for 10m"), [sample(T0 - 10_000, { requests: 100, status2xx: 100, latency })], T0, { down: false });
    assert.equal(o.value, 975);
    assert.equal(o.words, "p95 975 ms over 100 requests in 1m");
  });

  it("memory is the latest RSS as a share of the limit", () => {
    const limit = 512 * 1048576;
    const o = observeAlert(rule("memory>90% for 5m"), [sample(T0 - 20_000, { rssBytes: limit * 0.8, memoryLimitBytes: limit }), sample(T0 - 10_000, { rssBytes: limit * 0.95, memoryLimitBytes: limit })], T0, { down: false });
    assert.equal(Math.round(o.value! * 10) / 10, 95);
    assert.equal(o.words, "95% of its 512 MiB memory limit (486 MiB RSS)");
    const recovered = observeAlert(rule("memory>90% for 5m"), [sample(T0 - 20_000, { rssBytes: limit * 0.95, memoryLimitBytes: limit }), sample(T0 - 10_000, { rssBytes: limit * 0.25, memoryLimitBytes: limit })], T0, { down: false });
    assert.equal(recovered.words, "25% of its 512 MiB memory limit (128 MiB RSS)", "memory let go counts at once");
  });

  it("down comes from the app's uptime", () => {
    assert.deepEqual(observeAlert(rule("down"), [], T0, { down: true, cause: "HTTP 502", since: "2025-01-06T11:58:00.000Z" }), { value: 1, words: "down (HTTP 502) since 2025-01-06 11:58:00 UTC" });
    assert.deepEqual(observeAlert(rule("down"), [], T0, { down: false }), { value: 0, words: "up" });
  });
});

/** Runs a rule over values one round (10 s) apart, collecting the notices that would be queued. */
function run(r: AlertRuleSpec, values: (number | null)[], options: { start?: AlertState; from?: number; silencedAt?: (i: number) => boolean } = {}) {
  let state = options.start ?? INITIAL_ALERT_STATE;
  const statuses: string[] = [];
  const notices: { i: number; kind: NoticeKind; key: string }[] = [];
  values.forEach((value, i) => {
    const at = (options.from ?? T0) + i * 10_000;
    state = stepAlert(r, state, { value, words: String(value) }, at).state;
    const due = noticeDue(state, at, options.silencedAt?.(i) ?? false);
    if (due) {
      notices.push({ i, kind: due, key: alertNoticeKey("shop", "7", state, due) });
      state = noticeSent(state, due, at);
    }
    statuses.push(state.status);
  });
  return { state, statuses, notices };
}

describe("the state of one rule of one app", () => {
  const http = rule("http_5xx>5% for 30s");

  it("fires only once the condition held for `for`, and a dip below starts over", () => {
    const r = run(http, [8, 8, 8, 2, 8, 8, 8, 8]);
    assert.deepEqual(r.statuses, ["pending", "pending", "pending", "inactive", "pending", "pending", "pending", "firing"]);
    assert.deepEqual(r.notices.map((n) => [n.i, n.kind, n.key]), [[7, "firing", `alert:shop:7:${T0 + 70_000}:firing`]]);
  });

  it("resolves with hysteresis: only below threshold × 0.9", () => {
    const r = run(http, [8, 8, 8, 8, 4.8, 4.6, 4.4]);
    assert.deepEqual(r.statuses, ["pending", "pending", "pending", "firing", "firing", "firing", "resolved"]);
    assert.deepEqual(r.notices.map((n) => [n.i, n.kind]), [[3, "firing"], [6, "resolved"]]);
    assert.equal(r.notices[1]!.key, `alert:shop:7:${T0 + 30_000}:resolved`);
  });

  it("a period without data holds a firing rule and ends a pending one", () => {
    assert.deepEqual(run(http, [8, null, 8]).statuses, ["pending", "inactive", "pending"]);
    assert.deepEqual(run(rule("crash_loop"), [3, null, null]).statuses, ["firing", "firing", "firing"]);
  });

  it("groups a repeat within 5 minutes of resolving into the same incident: no new firing notice", () => {
    const crash = rule("crash_loop");
    // fires, resolves, fires again 2 minutes later, resolves, fires again 10 minutes after that
    const values = [3, 0, ...Array(11).fill(0), 4, 0, ...Array(60).fill(0), 3];
    const r = run(crash, values);
    assert.deepEqual(r.notices.map((n) => [n.i, n.kind]), [[0, "firing"], [1, "resolved"], [values.length - 1, "firing"]]);
    assert.equal(r.statuses[13], "firing");
    assert.notEqual(r.notices[2]!.key, r.notices[0]!.key, "a new incident, a new key");
  });

  it("reminds at most every 4 hours while it keeps firing, each reminder under its own key", () => {
    const crash = rule("crash_loop");
    let r = run(crash, [5]);
    const hour = 3_600_000;
    const keys = [r.notices[0]!.key];
    for (const h of [1, 3.9, 4, 5, 7.9, 8]) {
      const next = run(crash, [5], { start: r.state, from: T0 + h * hour });
      keys.push(...next.notices.map((n) => `${h}h ${n.kind} ${n.key}`));
      r = next;
    }
    assert.deepEqual(keys, [
      `alert:shop:7:${T0}:firing`,
      `4h reminder alert:shop:7:${T0}:firing:2`,
      `8h reminder alert:shop:7:${T0}:firing:3`,
    ]);
    const resolved = run(crash, [0], { start: r.state, from: T0 + 9 * hour });
    assert.deepEqual(resolved.notices.map((n) => n.key), [`alert:shop:7:${T0}:resolved:4`]);
  });

  it("a silence holds notices; a rule still firing when it ends is announced then, one resolved within it is not", () => {
    const crash = rule("crash_loop");
    const held = run(crash, [4, 4, 4, 4], { silencedAt: (i) => i < 2 });
    assert.deepEqual(held.notices.map((n) => [n.i, n.kind]), [[2, "firing"]]);
    const quiet = run(crash, [4, 0, 0], { silencedAt: (i) => i < 2 });
    assert.deepEqual(quiet.notices, []);
  });

  it("down fires on the probe's down and resolves on its up", () => {
    const r = run(rule("down"), [0, 1, 1, 0]);
    assert.deepEqual(r.statuses, ["inactive", "firing", "firing", "resolved"]);
    assert.deepEqual(r.notices.map((n) => n.kind), ["firing", "resolved"]);
  });
});
