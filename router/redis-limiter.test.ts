/** Rate limits shared by router nodes through a real redis-server, and what happens when it fails. */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import { Redis } from "ioredis";
import type { Route } from "../core/index.ts";
import { redisUnavailable, startRedis } from "../test/helpers/redis.ts";
import { MAX_RETRY_AFTER_S } from "./limits.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RedisRateLimiter } from "./redis-limiter.ts";
import { RouteTable } from "./route-table.ts";
import { send, sleep, startUpstream, waitFor } from "./test-support.ts";

const skip = redisUnavailable();

async function node(t: TestContext, routes: Route[], redisUrl: string): Promise<number> {
  const limiter = new RedisRateLimiter(redisUrl);
  await limiter.ready();
  const proxy = createProxyServer({ table: new RouteTable(routes), rateLimiter: limiter });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  return (proxy.server.address() as AddressInfo).port;
}

test("two router nodes draw from one Redis bucket per client; with Redis gone requests pass", { skip: skip ?? false }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const u = await startUpstream("ok");
  t.after(() => u.close());
  const routes: Route[] = [{ app: "shared", hosts: ["shared.localhost"], upstreams: [u.address], settings: { rateLimitRps: 0.5, rateLimitBurst: 4 } }];
  const a = await node(t, routes, redis.url);
  const b = await node(t, routes, redis.url);
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await send({ port: i % 2 === 0 ? a : b, host: "shared.localhost" })).status);
  // One node alone would allow 4; the two together still allow 4 in all.
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
  const limited = await send({ port: b, host: "shared.localhost" });
  assert.equal(limited.status, 429);
  assert.equal(limited.headers["retry-after"], "2");

  await redis.stop();
  const during = [];
  for (let i = 0; i < 3; i++) during.push((await send({ port: a, host: "shared.localhost" })).status);
  assert.deepEqual(during, [200, 200, 200], "a limiter outage does not take the app down");
});

test("a Redis that hangs with its connection open: requests pass at once, logged once; limits come back when it answers", { skip: skip ?? false }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const u = await startUpstream("ok");
  t.after(() => u.close());
  const logs: string[] = [];
  const limiter = new RedisRateLimiter(redis.url, (line) => logs.push(line), { probeIntervalMs: 100 });
  await limiter.ready();
  const proxy = createProxyServer({ table: new RouteTable([{ app: "shop", hosts: ["shop.localhost"], upstreams: [u.address], settings: { rateLimitRps: 0.1, rateLimitBurst: 2 } }]), rateLimiter: limiter });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  const port = (proxy.server.address() as AddressInfo).port;
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await send({ port, host: "shop.localhost" })).status);
  assert.deepEqual(statuses, [200, 200, 429]);

  redis.pause(); // SIGSTOP: the connection stays open, nothing answers
  t.after(() => redis.resume());
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const answer = await Promise.race([send({ port, host: "shop.localhost" }), sleep(3000).then(() => null)]);
    assert.ok(answer !== null, "the request is not held while Redis hangs");
    assert.equal(answer.status, 200, "a limiter outage lets requests through");
    assert.ok(performance.now() - started < 1000, `answered after ${(performance.now() - started).toFixed(0)} ms`);
  }
  assert.deepEqual(logs, ["rate limits: Redis is not answering (no answer within 100 ms); requests pass unlimited until it is back"]);

  redis.resume();
  await waitFor(() => logs.length === 2, 5000, "the limiter to see Redis answer again");
  assert.match(logs[1], /Redis is reachable again/);
  // The client's bucket in Redis is still empty (0.1/s): limited again.
  assert.equal((await send({ port, host: "shop.localhost" })).status, 429);
});

test("router nodes whose clocks disagree share buckets by Redis's clock: one 3 s ahead locks no client out on another", { skip: skip ?? false }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const a = new RedisRateLimiter(redis.url);
  const b = new RedisRateLimiter(redis.url);
  t.after(() => Promise.all([a.close(), b.close()]));
  await Promise.all([a.ready(), b.ready()]);
  const wall = Date.now;
  t.after(() => { Date.now = wall; });
  // rate-limit 100 (burst 200): the client's first request goes to node A, whose clock runs 3 s ahead.
  Date.now = () => wall() + 3000;
  const first = a.take("shop", "198.51.100.7", 100, 200);
  Date.now = wall;
  assert.equal(await first, 0);
  for (let i = 0; i < 3; i++) {
    await sleep(100);
    assert.equal(await b.take("shop", "198.51.100.7", 100, 200), 0, `request ${i + 2}, on node B`);
  }
});

/** A Redis, a limiter on it (its log lines collected) and a plain client to look at its keys. */
async function limiterWithRedis(t: TestContext): Promise<{ limiter: RedisRateLimiter; logs: string[]; client: Redis }> {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const logs: string[] = [];
  const limiter = new RedisRateLimiter(redis.url, (line) => logs.push(line));
  t.after(() => limiter.close());
  await limiter.ready();
  const client = new Redis(redis.url);
  t.after(() => client.disconnect());
  return { limiter, logs, client };
}

test("rates at the edges work in Redis: the slowest router:set accepts, and older tiny ones give a whole Retry-After", { skip: skip ?? false }, async (t) => {
  const { limiter, logs, client } = await limiterWithRedis(t);

  // router:set APP rate-limit 0.000001 and rate-burst 1000000: a whole bucket refills in 10^12 s.
  assert.equal(await limiter.take("slow", "203.0.113.9", 0.000001, 1_000_000), 0);
  const slowTtl = await client.pttl("deck:rl:slow:203.0.113.9");
  assert.ok(slowTtl > 999_000_000 && slowTtl <= 1_000_001_000, `kept until the token taken is back (10^6 s), not ${slowTtl} ms`);
  // A rate stored before deck refused such values: a whole Retry-After, and a key that still expires.
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await limiter.take("old", "203.0.113.9", 1e-25, 2));
  assert.deepEqual(answers, [0, 0, MAX_RETRY_AFTER_S]);
  assert.ok((await client.pttl("deck:rl:old:203.0.113.9")) > 1e14);
  assert.deepEqual(logs, [], "no errors");
});

test("a script error is logged as one, not as Redis being down, and other clients stay limited", { skip: skip ?? false }, async (t) => {
  const { limiter, logs, client } = await limiterWithRedis(t);
  // Something other than deck wrote a bucket key: the script's HMGET fails on it.
  await client.set("deck:rl:shop:203.0.113.9", "not a bucket");
  assert.equal(await limiter.take("shop", "203.0.113.9", 0.1, 1), 0, "the request passes");
  assert.equal(logs.length, 1, logs.join("\n"));
  assert.match(logs[0], /^rate limits: Redis answered the rate-limit script for app "shop" with an error \(WRONGTYPE/);
  assert.doesNotMatch(logs[0], /not answering/);
  assert.equal(await limiter.take("shop", "198.51.100.7", 0.1, 1), 0);
  assert.equal(await limiter.take("shop", "198.51.100.7", 0.1, 1), 10, "limits still apply to everyone else");
});

test("an IPv4 client has one bucket whether a node sees 127.0.0.1 or ::ffff:127.0.0.1", { skip: skip ?? false }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const u = await startUpstream("ok");
  t.after(() => u.close());
  const routes: Route[] = [{ app: "shop", hosts: ["shop.localhost"], upstreams: [u.address], settings: { rateLimitRps: 0.1, rateLimitBurst: 3 } }];
  // One node bound to IPv4 only, one dual-stack (a socket on :: reports IPv4 clients as ::ffff:a.b.c.d).
  const ports: number[] = [];
  for (const host of ["127.0.0.1", "::"]) {
    const limiter = new RedisRateLimiter(redis.url);
    await limiter.ready();
    const proxy = createProxyServer({ table: new RouteTable(routes), rateLimiter: limiter });
    await proxy.listen(0, host);
    t.after(() => proxy.close(0));
    ports.push((proxy.server.address() as AddressInfo).port);
  }
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await send({ port: ports[i % 2], host: "shop.localhost" })).status);
  assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429]);
  const client = new Redis(redis.url);
  t.after(() => client.disconnect());
  assert.deepEqual(await client.keys("deck:rl:*"), ["deck:rl:shop:127.0.0.1"]);
});
