import assert from "node:assert/strict";
import { test } from "node:test";
import { BandwidthThrottle } from "./bandwidth-throttle.ts";
import { buildSnapshot } from "./route-table.ts";

/** A throttle on a clock the test moves by hand. */
function throttleAt(start = 1_000): { throttle: BandwidthThrottle; advance: (ms: number) => void } {
  let now = start;
  return { throttle: new BandwidthThrottle(() => now), advance: (ms) => void (now += ms) };
}

test("one second's worth passes at once; past it, the wait is the time the deficit takes to refill", () => {
  const { throttle, advance } = throttleAt();
  assert.equal(throttle.take("a", 100_000, 60_000), 0);
  assert.equal(throttle.take("a", 100_000, 40_000), 0, "exactly the burst still passes without a wait");
  assert.equal(throttle.take("a", 100_000, 25_000), 250, "25,000 bytes over at 100,000/s: a quarter second");
  advance(250);
  assert.equal(throttle.take("a", 100_000, 10_000), 100, "the deficit refilled, the next piece waits for itself");
  advance(100);
  assert.equal(throttle.take("a", 100_000, 0), 0);
});

test("the bucket holds at most one second's worth, however long the app was idle", () => {
  const { throttle, advance } = throttleAt();
  throttle.take("a", 1_000, 1_000);
  advance(60_000);
  assert.equal(throttle.take("a", 1_000, 1_000), 0);
  assert.equal(throttle.take("a", 1_000, 500), 500, "a minute idle did not bank sixty seconds");
});

test("responses of one app share its bucket; other apps have their own", () => {
  const { throttle } = throttleAt();
  assert.equal(throttle.take("a", 10_000, 8_000), 0);
  assert.equal(throttle.take("a", 10_000, 8_000), 600, "a second response of the app pays for the first");
  assert.equal(throttle.take("b", 10_000, 8_000), 0, "another app is not charged");
});

test("a changed limit refills at the new rate, up to the new size", () => {
  const { throttle, advance } = throttleAt();
  assert.equal(throttle.take("a", 1_000, 3_000), 2_000, "2,000 bytes short at 1,000/s");
  advance(1_000);
  // One second at the old rate refilled 1,000 bytes: 1,000 still short, now at 10,000/s.
  assert.equal(throttle.take("a", 10_000, 0), 100);
  advance(10_000);
  assert.equal(throttle.take("a", 500, 500), 0, "lowered: the bucket is cut to the new size");
  assert.equal(throttle.take("a", 500, 1), 2);
});

test("sweep drops buckets that are full by now and keeps those still refilling", () => {
  const { throttle, advance } = throttleAt();
  throttle.take("busy", 1_000, 3_000);
  throttle.take("light", 1_000, 100);
  assert.equal(throttle.size, 2);
  advance(100);
  throttle.sweep();
  assert.deepEqual([throttle.has("busy"), throttle.has("light")], [true, false], "100 bytes refill in 100 ms");
  advance(2_899);
  throttle.sweep();
  assert.equal(throttle.has("busy"), true, "one byte short of full");
  advance(1);
  throttle.sweep();
  assert.equal(throttle.size, 0);
});

test("retainLimited drops the buckets of apps whose route lost its limit or is gone", () => {
  const { throttle } = throttleAt();
  for (const app of ["kept", "lifted", "removed"]) throttle.take(app, 1_000, 5_000);
  const snapshot = buildSnapshot([
    { app: "kept", hosts: ["kept.localhost"], upstreams: [], settings: { bandwidthBytesPerSecond: 1_000 } },
    { app: "lifted", hosts: ["lifted.localhost"], upstreams: [], settings: { hsts: true } },
  ]);
  throttle.retainLimited(snapshot);
  assert.deepEqual(["kept", "lifted", "removed"].filter((app) => throttle.has(app)), ["kept"]);
});
