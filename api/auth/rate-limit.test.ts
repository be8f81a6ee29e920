import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createRateLimiter, createSignInLimiter, ipKey, SIGN_IN_ACCOUNT_LIMIT, SIGN_IN_IP_LIMIT } from "./rate-limit.ts";

function fakeClock(start = Date.parse("2025-01-01T00:00:00Z")) {
  let t = start;
  return { now: () => t, advance: (seconds: number) => void (t += seconds * 1000) };
}

describe("rate limiter", () => {
  test("a bucket of 5 per 15 minutes refuses the 6th attempt, says when to retry, and refills over the window", () => {
    const clock = fakeClock();
    const limiter = createRateLimiter({ capacity: 5, windowSeconds: 900, now: clock.now });
    for (let i = 0; i < 5; i++) assert.deepEqual(limiter.take("k"), { ok: true });
    assert.deepEqual(limiter.take("k"), { ok: false, retryAfterSeconds: 180 });
    assert.deepEqual(limiter.take("other"), { ok: true }, "keys are independent");
    clock.advance(179);
    assert.deepEqual(limiter.take("k"), { ok: false, retryAfterSeconds: 1 });
    clock.advance(1);
    assert.deepEqual(limiter.take("k"), { ok: true }, "one token back after a fifth of the window");
    assert.equal(limiter.take("k").ok, false);
    clock.advance(900);
    for (let i = 0; i < 5; i++) assert.deepEqual(limiter.take("k"), { ok: true }, "full again after the window");
    assert.equal(limiter.take("k").ok, false);
  });

  test("peek does not spend; refund and reset give attempts back", () => {
    const clock = fakeClock();
    const limiter = createRateLimiter({ capacity: 2, windowSeconds: 60, now: clock.now });
    limiter.take("k");
    limiter.take("k");
    assert.equal(limiter.peek("k").ok, false);
    assert.equal(limiter.peek("k").ok, false);
    limiter.refund("k");
    assert.equal(limiter.take("k").ok, true);
    assert.equal(limiter.take("k").ok, false);
    limiter.reset("k");
    assert.equal(limiter.take("k").ok, true);
    assert.equal(limiter.take("k").ok, true);
  });

  test("forgets refilled buckets when it holds too many keys", () => {
    const clock = fakeClock();
    const limiter = createRateLimiter({ capacity: 1, windowSeconds: 1, now: clock.now, maxKeys: 10 });
    for (let i = 0; i < 10; i++) limiter.take(`k${i}`);
    clock.advance(2);
    limiter.take("new");
    assert.equal(limiter.size, 1);
  });

  test("sign-in attempts count against the account and the address; the defaults are 5/15 min and 20/min", () => {
    assert.deepEqual(SIGN_IN_ACCOUNT_LIMIT, { capacity: 5, windowSeconds: 900 });
    assert.deepEqual(SIGN_IN_IP_LIMIT, { capacity: 20, windowSeconds: 60 });
    const clock = fakeClock();
    const limiter = createSignInLimiter({ now: clock.now });
    for (let i = 0; i < 5; i++) assert.equal(limiter.takeAttempt({ email: "ada@example.com", ip: `10.0.0.${i}` }).ok, true);
    const refused = limiter.takeAttempt({ email: " ADA@example.com", ip: "10.0.0.99" });
    assert.deepEqual(refused, { ok: false, retryAfterSeconds: 180 }, "a new address does not help against the account limit");
    // One address guessing across many accounts runs out after 20 in a minute.
    for (let i = 0; i < 20; i++) assert.equal(limiter.takeAttempt({ email: `u${i}@example.com`, ip: "10.9.9.9" }).ok, true);
    const byIp = limiter.takeAttempt({ email: "someone@example.com", ip: "10.9.9.9" });
    assert.deepEqual(byIp, { ok: false, retryAfterSeconds: 3 });
    assert.equal(limiter.takeAttempt({ email: "someone@example.com", ip: "10.9.9.8" }).ok, true, "a refused attempt spent nothing for its account");
    clock.advance(900);
    assert.equal(limiter.takeAttempt({ email: "ada@example.com", ip: "10.9.9.9" }).ok, true);
  });

  test("a successful sign-in clears the account's failures", () => {
    const clock = fakeClock();
    const limiter = createSignInLimiter({ now: clock.now });
    const attempt = { email: "ada@example.com", ip: "10.0.0.1" };
    for (let i = 0; i < 4; i++) limiter.takeAttempt(attempt);
    limiter.takeAttempt(attempt);
    limiter.forgive(attempt, { signedIn: true });
    for (let i = 0; i < 5; i++) assert.equal(limiter.takeAttempt(attempt).ok, true);
    assert.equal(limiter.takeAttempt(attempt).ok, false);
  });

  test("addresses: IPv4-mapped IPv6 is the IPv4 address; IPv6 is keyed by /64", () => {
    assert.equal(ipKey("::ffff:192.0.2.7"), ipKey("192.0.2.7"));
    assert.equal(ipKey("2001:db8:1:2::1"), ipKey("2001:0db8:0001:0002:ffff::9"));
    assert.equal(ipKey("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64");
    assert.notEqual(ipKey("2001:db8:1:3::1"), ipKey("2001:db8:1:2::1"));
    assert.equal(ipKey("::1"), "ip:0:0:0:0::/64");
  });
});
