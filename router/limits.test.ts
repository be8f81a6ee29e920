/** The in-memory rate limiter and connection counter: eviction, bounded cost, clocks, client keys. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { clientKey, ConnectionCounter, LocalRateLimiter, MAX_BUCKETS, MAX_RETRY_AFTER_S } from "./limits.ts";

/** A distinct IPv6 address per number. */
const address = (i: number) => `2001:db8::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`;

test("each bucket is forgotten once it has refilled at its own rate, whatever other apps or earlier settings refill at", () => {
  let now = 0;
  const limiter = new LocalRateLimiter(() => now);
  // Once rate-limit 0.001 (a bucket of 1 refills in 1000 s); the app's other clients at 100/s refill in 2 s.
  limiter.take("blog", "10.0.0.1", 0.001, 1);
  for (let i = 0; i < 1000; i++) limiter.take("blog", `10.1.${i >> 8}.${i & 255}`, 100, 200);
  // rate-limit 1, rate-burst 100: a client that made one request is full again after 1 s, one that made 100 after 100 s.
  limiter.take("shop", "10.2.0.1", 1, 100);
  for (let i = 0; i < 100; i++) limiter.take("shop", "10.2.0.2", 1, 100);
  now += 60_000;
  limiter.sweep();
  assert.equal(limiter.size, 2, "only the buckets still refilling are kept: blog's slow one and shop's emptied one");
  now += 41_000;
  limiter.sweep();
  assert.equal(limiter.size, 1, "shop's emptied bucket is full after 100 s and forgotten");
  void limiter.close();
});

test("past MAX_BUCKETS the least recently used bucket goes: no sweep per new address, an active client keeps its bucket", () => {
  const now = 0;
  const limiter = new LocalRateLimiter(() => now);
  // An active client that used its burst (rate-limit 0.001: no refill during the test).
  assert.equal(limiter.take("shop", "203.0.113.9", 0.001, 1), 0);
  for (let i = 0; i < MAX_BUCKETS * 0.75; i++) limiter.take("shop", address(i), 1, 100);
  assert.ok(limiter.take("shop", "203.0.113.9", 0.001, 1) > 0, "still limited");
  // A flood of new addresses past the cap (rate-limit 1, rate-burst 100: none is full again for 1 s).
  for (let i = MAX_BUCKETS; i < MAX_BUCKETS * 1.25; i++) limiter.take("shop", address(i), 1, 100);
  assert.equal(limiter.size, MAX_BUCKETS);
  const started = performance.now();
  for (let i = 0; i < 2000; i++) limiter.take("shop", address(MAX_BUCKETS * 2 + i), 1, 100);
  const ms = performance.now() - started;
  assert.ok(ms < 1000, `2000 new addresses past the cap took ${ms.toFixed(0)} ms (a sweep of every bucket each time)`);
  assert.equal(limiter.size, MAX_BUCKETS);
  assert.ok(limiter.take("shop", "203.0.113.9", 0.001, 1) > 0, "the active client's bucket outlived the flood's older addresses");
  void limiter.close();
});

test("a step of the wall clock neither refills buckets nor locks clients out (the clock is monotonic)", (t) => {
  const wall = Date.now;
  let step = 0;
  Date.now = () => wall() + step;
  t.after(() => { Date.now = wall; });
  const limiter = new LocalRateLimiter();
  t.after(() => limiter.close());
  assert.equal(limiter.take("shop", "203.0.113.9", 1, 2), 0);
  assert.equal(limiter.take("shop", "203.0.113.9", 1, 2), 0);
  assert.equal(limiter.take("shop", "203.0.113.9", 1, 2), 1);
  step = 3_600_000;
  assert.equal(limiter.take("shop", "203.0.113.9", 1, 2), 1, "an hour forward on the wall clock gives no tokens");

  // Server defaults (1000/s, burst 2000): a browser's 10 requests, then NTP steps the clock back 5 s.
  for (let i = 0; i < 10; i++) limiter.take("shop", "198.51.100.7", 1000, 2000);
  step -= 5_000;
  assert.equal(limiter.take("shop", "198.51.100.7", 1000, 2000), 0, "a step back locks nobody out");
});

test("an injected clock that goes back takes no tokens", () => {
  let now = 1_700_000_000_000;
  const limiter = new LocalRateLimiter(() => now);
  for (let i = 0; i < 10; i++) limiter.take("shop", "203.0.113.9", 1000, 2000);
  now -= 5000;
  const answers: number[] = [];
  for (let i = 0; i < 5; i++) {
    now += 500;
    answers.push(limiter.take("shop", "203.0.113.9", 1000, 2000));
  }
  assert.deepEqual(answers, [0, 0, 0, 0, 0]);
  void limiter.close();
});

test("Retry-After is a whole number of seconds, at most a year, whatever rate a route carries", () => {
  const limiter = new LocalRateLimiter(() => 0);
  for (const rps of [1e-25, 1e-50, 5e-324]) {
    assert.equal(limiter.take("old", `c-${rps}`, rps, 1), 0);
    const wait = limiter.take("old", `c-${rps}`, rps, 1);
    assert.equal(wait, MAX_RETRY_AFTER_S, `rate ${rps}`);
    assert.match(String(wait), /^[1-9]\d*$/);
  }
  assert.equal(limiter.take("a", "c", 0.000001, 1), 0);
  assert.equal(limiter.take("a", "c", 0.000001, 1), 1_000_000, "the slowest rate deck accepts waits its exact time");
  void limiter.close();
});

test("an IPv4 client has one bucket and one connection count whether it shows as 1.2.3.4 or ::ffff:1.2.3.4", () => {
  assert.equal(clientKey("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(clientKey("::FFFF:203.0.113.9"), "203.0.113.9");
  assert.equal(clientKey("::ffff:cb00:7109"), "203.0.113.9");
  assert.equal(clientKey("0:0:0:0:0:ffff:203.0.113.9"), "203.0.113.9");
  for (const kept of ["203.0.113.9", "2001:db8::1", "::1", "::ffff", "64:ff9b::cb00:7109", ""]) assert.equal(clientKey(kept), kept);

  const limiter = new LocalRateLimiter(() => 0);
  assert.equal(limiter.take("shop", "::ffff:203.0.113.9", 0.1, 1), 0);
  assert.equal(limiter.take("shop", "203.0.113.9", 0.1, 1), 10, "the same client's bucket is empty");
  void limiter.close();

  const open = new ConnectionCounter();
  assert.equal(open.tryOpen("::ffff:203.0.113.9", 2), true);
  assert.equal(open.tryOpen("203.0.113.9", 2), true);
  assert.equal(open.tryOpen("::ffff:203.0.113.9", 2), false);
  open.close("203.0.113.9");
  assert.equal(open.count("::ffff:203.0.113.9"), 1);
});
