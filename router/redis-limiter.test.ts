/** Rate limits shared by two router nodes through a real redis-server. */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import type { Route } from "../core/index.ts";
import { redisUnavailable, startRedis } from "../test/helpers/redis.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RedisRateLimiter } from "./redis-limiter.ts";
import { RouteTable } from "./route-table.ts";
import { send, startUpstream } from "./test-support.ts";

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
