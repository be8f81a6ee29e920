import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkAutoscaleSettings, decideScale, describeTargets, observeTargets, parseP95Target, parsePercentTarget, parseRateTarget,
  type AutoscaleHistory, type AutoscaleSettings, type ScaleDecision,
} from "./autoscale.ts";
import { LATENCY_BOUNDS, type MetricSample } from "./metrics.ts";

const NOW = 1_700_000_000_000;
const MIN = 60_000;

/** A latency histogram with `n` requests in the bucket holding `ms`. */
function histogram(n: number, ms: number): number[] {
  const h = new Array<number>(LATENCY_BOUNDS.length + 1).fill(0);
  const i = LATENCY_BOUNDS.findIndex((b) => ms / 1000 <= b);
  h[i === -1 ? LATENCY_BOUNDS.length : i] = n;
  return h;
}

const row = (at: number, s: Partial<MetricSample>): MetricSample => ({
  at, seconds: 10, process: "", release: 1, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null, restarts: 0, connections: null,
  requests: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null, ...s,
});

/** The app's traffic every 10 s over [from, to): `perRow` requests each, all answered in about `ms`. */
function traffic(from: number, to: number, perRow: number, ms: number): MetricSample[] {
  const out: MetricSample[] = [];
  for (let at = from; at < to; at += 10_000) out.push(row(at, { requests: perRow, status2xx: perRow, latency: perRow ? histogram(perRow, ms) : null }));
  return out;
}

/** `count` processes every 10 s over [from, to), each using `cores` of CPU. */
function cpu(from: number, to: number, count: number, cores: number | null): MetricSample[] {
  const out: MetricSample[] = [];
  for (let at = from; at < to; at += 10_000) {
    for (let i = 1; i <= count; i++) out.push(row(at, { process: `web.${i}`, cpuSeconds: cores === null ? null : cores * 10 }));
  }
  return out;
}

const settings = (s: Partial<AutoscaleSettings> = {}): AutoscaleSettings => ({ type: "web", min: 1, max: 10, p95Ms: null, cpuPercent: null, rps: null, ...s });
const history = (h: Partial<AutoscaleHistory> = {}): AutoscaleHistory => ({
  current: 1, traffic: [], processes: [], exceededRounds: 0, lastChangeAt: null, lastScaleOutAt: null, ...h,
});

// 400 ms answers read as a p95 of 487.5 ms (the 250–500 ms bucket, interpolated); 40 ms as 48.75 ms.
const SLOW = 400;
const FAST = 40;

interface Case {
  name: string;
  settings: Partial<AutoscaleSettings>;
  history: Partial<AutoscaleHistory>;
  decision: ScaleDecision;
  exceededRounds: number;
}

const lastMinute = (perRow: number, ms: number) => traffic(NOW - MIN, NOW, perRow, ms);
const fiveMinutes = (perRow: number, ms: number) => traffic(NOW - 5 * MIN, NOW, perRow, ms);

const CASES: Case[] = [
  {
    name: "below the minimum: straight to it, whatever the metrics",
    settings: { min: 2 }, history: { current: 0 },
    decision: { kind: "out", from: 0, to: 2, reason: "0 is below the minimum of 2" }, exceededRounds: 0,
  },
  {
    name: "above the maximum: straight down to it, cooldown or not",
    settings: { max: 3, p95Ms: 200 }, history: { current: 5, lastChangeAt: NOW - 1000 },
    decision: { kind: "in", from: 5, to: 3, reason: "5 is above the maximum of 3" }, exceededRounds: 0,
  },
  {
    name: "no samples in the last minute: hold, and the streak starts over",
    settings: { p95Ms: 200 }, history: { exceededRounds: 1, traffic: traffic(NOW - 3 * MIN, NOW - MIN, 10, SLOW) },
    decision: { kind: "hold", reason: "no metrics in the last minute" }, exceededRounds: 0,
  },
  {
    name: "p95 above target in a first round: wait for the second",
    settings: { p95Ms: 200 }, history: { traffic: lastMinute(10, SLOW) },
    decision: { kind: "hold", reason: "p95 488ms above 200ms (round 1 of 2)" }, exceededRounds: 1,
  },
  {
    name: "p95 above target a second round: out as far as the ratio asks (487.5 / 200 → 3)",
    settings: { p95Ms: 200 }, history: { traffic: lastMinute(10, SLOW), exceededRounds: 1 },
    decision: { kind: "out", from: 1, to: 3, reason: "p95 488ms above 200ms over the last minute" }, exceededRounds: 0,
  },
  {
    name: "a far exceeded target: at most 4 more at once",
    settings: { p95Ms: 100, max: 50 }, history: { current: 4, traffic: lastMinute(10, SLOW), exceededRounds: 1 },
    decision: { kind: "out", from: 4, to: 8, reason: "p95 488ms above 100ms over the last minute" }, exceededRounds: 0,
  },
  {
    name: "never past the maximum",
    settings: { p95Ms: 200, max: 3 }, history: { current: 2, traffic: lastMinute(10, SLOW), exceededRounds: 1 },
    decision: { kind: "out", from: 2, to: 3, reason: "p95 488ms above 200ms over the last minute" }, exceededRounds: 0,
  },
  {
    name: "slightly over: one more (4 × 1.05 rounds up to 5)",
    // 420 requests per 10 s = 42/s over 4 processes = 10.5 per process, target 10
    settings: { rps: 10 }, history: { current: 4, traffic: lastMinute(420, FAST), exceededRounds: 1 },
    decision: { kind: "out", from: 4, to: 5, reason: "10.5 requests/s per process above 10 over the last minute" }, exceededRounds: 0,
  },
  {
    name: "a slow p95 on fewer than 20 requests in the minute is not exceeded",
    settings: { p95Ms: 200 }, history: { traffic: [...traffic(NOW - MIN, NOW - 30_000, 6, SLOW), ...traffic(NOW - 30_000, NOW, 0, SLOW)], exceededRounds: 1 },
    decision: { kind: "hold", reason: "within targets, at the minimum of 1" }, exceededRounds: 0,
  },
  {
    name: "20 slow requests in the minute are enough",
    settings: { p95Ms: 200 }, history: { traffic: [...traffic(NOW - MIN, NOW - 40_000, 10, SLOW), ...traffic(NOW - 40_000, NOW, 0, SLOW)], exceededRounds: 1 },
    decision: { kind: "out", from: 1, to: 3, reason: "p95 488ms above 200ms over the last minute" }, exceededRounds: 0,
  },
  {
    name: "exceeded at the maximum: hold, and keep counting",
    settings: { p95Ms: 200, max: 2 }, history: { current: 2, traffic: lastMinute(10, SLOW), exceededRounds: 3 },
    decision: { kind: "hold", reason: "p95 488ms above 200ms, but already at the maximum of 2" }, exceededRounds: 4,
  },
  {
    name: "exceeded within a minute of the last scale-out: hold",
    settings: { p95Ms: 200 }, history: { current: 2, traffic: lastMinute(10, SLOW), exceededRounds: 1, lastScaleOutAt: NOW - 59_000, lastChangeAt: NOW - 59_000 },
    decision: { kind: "hold", reason: "p95 488ms above 200ms, but scaled out less than 60s ago" }, exceededRounds: 2,
  },
  {
    name: "exceeded a minute after the last scale-out: out again",
    settings: { p95Ms: 200 }, history: { current: 2, traffic: lastMinute(10, SLOW), exceededRounds: 2, lastScaleOutAt: NOW - 60_000, lastChangeAt: NOW - 60_000 },
    decision: { kind: "out", from: 2, to: 5, reason: "p95 488ms above 200ms over the last minute" }, exceededRounds: 0,
  },
  {
    name: "CPU per process above target (two processes at 0.9 cores, target 70%)",
    settings: { cpuPercent: 70 }, history: { current: 2, traffic: lastMinute(1, FAST), processes: cpu(NOW - MIN, NOW, 2, 0.9), exceededRounds: 1 },
    decision: { kind: "out", from: 2, to: 3, reason: "CPU 90% per process above 70% over the last minute" }, exceededRounds: 0,
  },
  {
    name: "several targets exceeded: the worst decides, all are named",
    settings: { cpuPercent: 70, rps: 1 }, history: { current: 2, traffic: lastMinute(60, FAST), processes: cpu(NOW - MIN, NOW, 2, 0.8), exceededRounds: 1 },
    decision: { kind: "out", from: 2, to: 6, reason: "3 requests/s per process above 1, CPU 80% per process above 70% over the last minute" }, exceededRounds: 0,
  },
  {
    name: "a streak breaks when the targets are met again",
    settings: { p95Ms: 200 }, history: { current: 2, traffic: lastMinute(10, FAST), exceededRounds: 1, lastChangeAt: NOW - MIN },
    decision: { kind: "hold", reason: "within targets; processes changed less than 5 minutes ago" }, exceededRounds: 0,
  },
  {
    name: "five quiet minutes after the cooldown: in by one",
    settings: { p95Ms: 200, rps: 10 }, history: { current: 3, traffic: fiveMinutes(100, FAST), lastChangeAt: NOW - 6 * MIN, lastScaleOutAt: NOW - 6 * MIN },
    decision: { kind: "in", from: 3, to: 2, reason: "every target below 50% of itself for 5 minutes (p95 200ms, rps 10)" }, exceededRounds: 0,
  },
  {
    name: "quiet, but within 5 minutes of a change: hold",
    settings: { p95Ms: 200 }, history: { current: 3, traffic: fiveMinutes(100, FAST), lastChangeAt: NOW - 4 * MIN },
    decision: { kind: "hold", reason: "within targets; processes changed less than 5 minutes ago" }, exceededRounds: 0,
  },
  {
    name: "quiet at the minimum: hold",
    settings: { p95Ms: 200, min: 2 }, history: { current: 2, traffic: fiveMinutes(100, FAST) },
    decision: { kind: "hold", reason: "within targets, at the minimum of 2" }, exceededRounds: 0,
  },
  {
    name: "one of the five minutes above half a target: hold",
    // 180 ms answers read as a p95 of 242.5 ms: under the 300 ms target, but not under half of it
    settings: { p95Ms: 300 }, history: { current: 3, traffic: [...traffic(NOW - 5 * MIN, NOW - 3 * MIN, 100, FAST), ...traffic(NOW - 3 * MIN, NOW - 2 * MIN, 100, 180), ...traffic(NOW - 2 * MIN, NOW, 100, FAST)] },
    decision: { kind: "hold", reason: "within targets" }, exceededRounds: 0,
  },
  {
    name: "a minute without samples in the five: hold (not known to be quiet)",
    settings: { p95Ms: 200 }, history: { current: 3, traffic: [...traffic(NOW - 5 * MIN, NOW - 3 * MIN, 100, FAST), ...traffic(NOW - 2 * MIN, NOW, 100, FAST)] },
    decision: { kind: "hold", reason: "within targets" }, exceededRounds: 0,
  },
  {
    name: "slow answers on a trickle of requests count as quiet for scaling in",
    settings: { p95Ms: 200 }, history: { current: 2, traffic: fiveMinutes(1, SLOW) },
    decision: { kind: "in", from: 2, to: 1, reason: "every target below 50% of itself for 5 minutes (p95 200ms)" }, exceededRounds: 0,
  },
  {
    name: "requests/s per process at half the target or more: hold",
    // 50 per 10 s = 5/s over 2 processes = 2.5 per process; half of 5 is 2.5
    settings: { rps: 5 }, history: { current: 2, traffic: fiveMinutes(50, FAST) },
    decision: { kind: "hold", reason: "within targets" }, exceededRounds: 0,
  },
  {
    name: "CPU low for five minutes: in by one",
    settings: { cpuPercent: 70 }, history: { current: 4, traffic: fiveMinutes(1, FAST), processes: cpu(NOW - 5 * MIN, NOW, 4, 0.2) },
    decision: { kind: "in", from: 4, to: 3, reason: "every target below 50% of itself for 5 minutes (cpu 70%)" }, exceededRounds: 0,
  },
  {
    name: "a scale failed a minute and a half ago, the second in a row: the bounds wait too (2 minutes)",
    settings: { min: 50, max: 50, cpuPercent: 70 }, history: { current: 1, failuresInARow: 2, lastFailureAt: NOW - 90_000, exceededRounds: 1 },
    decision: { kind: "hold", reason: "the last scale failed; trying again in 30s" }, exceededRounds: 1,
  },
  {
    name: "a scale failed, and its wait is over: tried again",
    settings: { min: 2 }, history: { current: 1, failuresInARow: 1, lastFailureAt: NOW - 61_000 },
    decision: { kind: "out", from: 1, to: 2, reason: "1 is below the minimum of 2" }, exceededRounds: 0,
  },
  {
    name: "five scales failed in a row: deck stops trying until a deploy or new settings",
    settings: { min: 2, p95Ms: 200 }, history: { current: 1, failuresInARow: 5, lastFailureAt: NOW - 24 * 60 * MIN, traffic: lastMinute(100, SLOW) },
    decision: { kind: "hold", reason: "the last 5 scales failed; deck tries again after the next deploy or ps:autoscale" }, exceededRounds: 0,
  },
  {
    name: "CPU not measured: neither out nor in",
    settings: { cpuPercent: 70 }, history: { current: 4, traffic: fiveMinutes(1, FAST), processes: cpu(NOW - 5 * MIN, NOW, 4, null), exceededRounds: 1 },
    decision: { kind: "hold", reason: "within targets" }, exceededRounds: 0,
  },
];

describe("decideScale", () => {
  for (const c of CASES) {
    it(c.name, () => {
      assert.deepEqual(decideScale(settings(c.settings), history(c.history), NOW), { decision: c.decision, exceededRounds: c.exceededRounds });
    });
  }
});

describe("observeTargets", () => {
  it("sums the window's traffic and averages CPU over the processes that measured it", () => {
    const h = history({ current: 2, traffic: lastMinute(30, SLOW), processes: [...cpu(NOW - MIN, NOW, 2, 0.5), ...cpu(NOW - 2 * MIN, NOW - MIN, 2, 1)] });
    assert.deepEqual(observeTargets(h, NOW - MIN, NOW), { requests: 180, p95Ms: 487.5, rpsPerProcess: 1.5, cpuPercent: 50 });
    assert.equal(observeTargets(h, NOW - 3 * MIN, NOW - 2 * MIN), null);
  });
});

describe("autoscale settings as users type them", () => {
  const ok = (s: Partial<AutoscaleSettings>) => checkAutoscaleSettings(settings(s));
  const TABLE: [string, Partial<AutoscaleSettings>, string | null][] = [
    ["a web type on p95", { p95Ms: 300 }, null],
    ["a worker on CPU", { type: "worker", cpuPercent: 70 }, null],
    ["no target", {}, "give at least one target: --p95 300ms, --cpu 70% or --rps 50"],
    ["min 0", { min: 0, max: 2, p95Ms: 300 }, "--min must be a whole number of at least 1 (scaling to zero is not supported yet)"],
    ["max 51", { max: 51, p95Ms: 300 }, "--max must be a whole number of at most 50"],
    ["max below min", { min: 3, max: 2, p95Ms: 300 }, "--max (2) must be at least --min (3)"],
    ["p95 on a worker", { type: "worker", p95Ms: 300 }, "worker processes get no web requests: --p95 and --rps need a web type (web); scale worker on --cpu"],
    ["rps on a worker", { type: "worker", rps: 5 }, "worker processes get no web requests: --p95 and --rps need a web type (web); scale worker on --cpu"],
    ["a p95 of 0", { p95Ms: 0 }, "the p95 target must be from 1ms to 10s"],
    ["a CPU of 0", { cpuPercent: 0 }, "the CPU target must be a percent of one core above 0 (70%, or 150% for one and a half cores)"],
    ["rps 0", { rps: 0 }, "the requests/s target must be above 0"],
    ["a bad type", { type: "Web!", cpuPercent: 50 }, "\"Web!\" is not a process type (like web or worker)"],
  ];
  for (const [name, s, message] of TABLE) {
    it(name, () => {
      const r = ok(s);
      assert.deepEqual(r.ok ? null : r.message, message);
    });
  }

  it("reads targets as written", () => {
    assert.deepEqual(["300ms", "1s", "1.5s", "250", "fast", "3m"].map(parseP95Target), [300, 1000, 1500, 250, null, null]);
    assert.deepEqual(["70%", "70", "12.5%", "lots"].map(parsePercentTarget), [70, 70, 12.5, null]);
    assert.deepEqual(["50", "12.5", "50/s"].map(parseRateTarget), [50, 12.5, null]);
    assert.equal(describeTargets({ p95Ms: 300, cpuPercent: 70, rps: 50 }), "p95 300ms, cpu 70%, rps 50");
  });
});
