/**
 * The `RateLimiter` contract (limits.ts): one suite that every limiter passes, in this process's memory
 * or shared through Redis, registered by rate-limiter.contract.test.ts. What it checks is what a client
 * of an app sees: how many requests pass at once, the Retry-After it is told, and that buckets refill.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { MAX_RETRY_AFTER_S, type RateLimiter } from "./limits.ts";

export interface RateLimiterHarness {
  /** A new limiter, ready to answer. Each test uses apps of its own, so limiters may share a store. */
  create(): Promise<RateLimiter>;
  /** Removes what the harness started (after every limiter it made is closed). */
  close(): Promise<void>;
}

/** Registers the contract suite for the limiters `setup` makes (`skip`: why they cannot run here). */
export function describeRateLimiterContract(name: string, setup: () => Promise<RateLimiterHarness>, options: { skip?: string } = {}): void {
  describe(`RateLimiter contract: ${name}`, { skip: options.skip ?? false }, () => {
    let harness: RateLimiterHarness | undefined;
    const limiters: RateLimiter[] = [];

    async function limiter(): Promise<RateLimiter> {
      harness ??= await setup();
      const made = await harness.create();
      limiters.push(made);
      return made;
    }

    /** `count` requests of one client, one after the other: each one's answer (0 = it passed). */
    async function takeMany(l: RateLimiter, app: string, client: string, rps: number, burst: number, count: number): Promise<number[]> {
      const answers: number[] = [];
      for (let i = 0; i < count; i++) answers.push(await l.take(app, client, rps, burst));
      return answers;
    }

    after(async () => {
      for (const l of limiters) await l.close();
      await harness?.close();
    });

    it("lets a burst through, then says in whole seconds when the next request passes", async () => {
      const l = await limiter();
      // 0.5 requests per second: an empty bucket has its next token in 2 s.
      assert.deepEqual(await takeMany(l, "burst", "198.51.100.1", 0.5, 3, 5), [0, 0, 0, 2, 2]);
    });

    it("keeps a bucket per app and client: one client's burst leaves others and other apps alone", async () => {
      const l = await limiter();
      assert.deepEqual(await takeMany(l, "apart-a", "198.51.100.2", 0.1, 2, 3), [0, 0, 10]);
      assert.deepEqual(await takeMany(l, "apart-a", "198.51.100.3", 0.1, 2, 2), [0, 0], "another client of the same app");
      assert.deepEqual(await takeMany(l, "apart-b", "198.51.100.2", 0.1, 2, 2), [0, 0], "the same client of another app");
    });

    it("counts an IPv4 client once, whether it shows as 1.2.3.4 or as an IPv4-mapped IPv6 address", async () => {
      const l = await limiter();
      assert.equal(await l.take("mapped", "203.0.113.4", 0.1, 2), 0);
      assert.equal(await l.take("mapped", "::ffff:203.0.113.4", 0.1, 2), 0);
      assert.equal(await l.take("mapped", "::ffff:cb00:7104", 0.1, 2), 10, "the third request of the same client, spelt in hexadecimal");
    });

    it("refills a bucket at its rate: a limited client passes again once a token is back", async () => {
      const l = await limiter();
      assert.deepEqual(await takeMany(l, "refill", "198.51.100.4", 20, 1, 2), [0, 1]);
      // 20 per second: a token is back within 50 ms; waiting for it, not for a fixed time.
      for (const deadline = Date.now() + 10_000; (await l.take("refill", "198.51.100.4", 20, 1)) !== 0; await new Promise((r) => setTimeout(r, 20))) {
        assert.ok(Date.now() < deadline, "the bucket never refilled");
      }
    });

    it("answers a whole Retry-After of at most a year whatever rate a route carries", async () => {
      const l = await limiter();
      assert.deepEqual(await takeMany(l, "tiny", "198.51.100.5", 1e-25, 2, 3), [0, 0, MAX_RETRY_AFTER_S]);
    });
  });
}
