import assert from "node:assert/strict";
import { test } from "node:test";
import { isDeckError } from "../core/index.ts";
import { RouteTable, buildSnapshot, normaliseHost, parseUpstream, validateRoute } from "./route-table.ts";

test("normaliseHost lowercases and drops the port and a trailing dot", () => {
  assert.equal(normaliseHost("MyApp.Localhost:8080"), "myapp.localhost");
  assert.equal(normaliseHost("myapp.localhost."), "myapp.localhost");
  assert.equal(normaliseHost("myapp.localhost.:80"), "myapp.localhost");
  assert.equal(normaliseHost("[::1]:8080"), "[::1]");
  assert.equal(normaliseHost("plain"), "plain");
});

test("lookup finds the app whatever the case, port or trailing dot of the Host header", () => {
  const table = new RouteTable([{ app: "shop", hosts: ["shop.localhost", "Shop.Example.com"], upstreams: ["127.0.0.1:4000"] }]);
  for (const host of ["shop.localhost", "SHOP.LOCALHOST:8080", "shop.localhost.", "shop.example.com:80"]) {
    assert.equal(table.lookup(host)?.app, "shop", host);
  }
  assert.equal(table.lookup("other.localhost"), undefined);
  assert.equal(table.lookup(undefined), undefined);
  assert.equal(table.lookup(""), undefined);
});

test("pick rotates over upstreams and returns undefined for an app without any", () => {
  const table = new RouteTable([
    { app: "a", hosts: ["a.localhost"], upstreams: ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"] },
    { app: "b", hosts: ["b.localhost"], upstreams: [] },
  ]);
  const entry = table.lookup("a.localhost")!;
  const picked = Array.from({ length: 6 }, () => RouteTable.pick(entry)!.port);
  assert.deepEqual(picked, [1, 2, 3, 1, 2, 3]);
  assert.equal(RouteTable.pick(table.lookup("b.localhost")!), undefined);
});

test("set, remove and replaceAll swap whole snapshots and keep other apps", () => {
  const table = new RouteTable([{ app: "a", hosts: ["a.localhost"], upstreams: ["127.0.0.1:1"] }]);
  const before = table.snapshot;
  table.set({ app: "b", hosts: ["b.localhost"], upstreams: ["127.0.0.1:2"] });
  assert.notEqual(table.snapshot, before, "a change produces a new snapshot");
  assert.equal(before.byHost.has("b.localhost"), false, "the old snapshot is untouched");
  table.set({ app: "a", hosts: ["new-a.localhost"], upstreams: ["127.0.0.1:3"] });
  assert.equal(table.lookup("a.localhost"), undefined, "a's old host is gone");
  assert.equal(table.lookup("new-a.localhost")?.upstreams[0].port, 3);
  assert.equal(table.remove("b"), true);
  assert.equal(table.remove("b"), false);
  assert.deepEqual(table.routes(), [{ app: "a", hosts: ["new-a.localhost"], upstreams: ["127.0.0.1:3"] }]);
  table.replaceAll([]);
  assert.deepEqual(table.routes(), []);
});

test("a host claimed by two apps is refused and leaves the table unchanged", () => {
  const table = new RouteTable([{ app: "a", hosts: ["shared.localhost"], upstreams: [] }]);
  assert.throws(
    () => table.set({ app: "b", hosts: ["SHARED.localhost"], upstreams: [] }),
    (e: unknown) => isDeckError(e) && e.code === "route_conflict" && /shared\.localhost.*"a"/.test(e.message),
  );
  assert.equal(table.lookup("shared.localhost")?.app, "a");
  assert.throws(() => buildSnapshot([{ app: "a", hosts: ["x"], upstreams: [] }, { app: "a", hosts: ["y"], upstreams: [] }]), /appears twice/);
});

test("validateRoute accepts a good route and names the problem in a bad one", () => {
  const ok = validateRoute({ app: "shop", hosts: ["Shop.localhost:8080"], upstreams: ["127.0.0.1:4000", "[::1]:4001"] });
  assert.deepEqual(ok, { ok: true, route: { app: "shop", hosts: ["shop.localhost"], upstreams: ["127.0.0.1:4000", "[::1]:4001"] } });
  const limited = validateRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [], settings: { bandwidthBytesPerSecond: 100_000 } });
  assert.deepEqual(limited.ok && limited.route.settings, { bandwidthBytesPerSecond: 100_000 });
  const cases: [unknown, RegExp][] = [
    [null, /must be an object/],
    [[], /must be an object/],
    [{ app: "Bad Name", hosts: ["x"], upstreams: [] }, /invalid app name/],
    [{ app: "shop", hosts: [], upstreams: [] }, /hosts must be a non-empty array/],
    [{ app: "shop", hosts: ["a b"], upstreams: [] }, /is not a host name/],
    [{ app: "shop", hosts: ["x"], upstreams: "127.0.0.1:1" }, /upstreams must be an array/],
    [{ app: "shop", hosts: ["x"], upstreams: ["127.0.0.1"] }, /is not "host:port"/],
    [{ app: "shop", hosts: ["x"], upstreams: ["127.0.0.1:70000"] }, /is not "host:port"/],
    [{ app: "shop", hosts: ["x"], upstreams: [], settings: { bandwidthBytesPerSecond: 0 } }, /settings\.bandwidthBytesPerSecond must be a number > 0/],
    [{ app: "shop", hosts: ["x"], upstreams: [], settings: { bandwidthBytesPerSecond: "1m" } }, /settings\.bandwidthBytesPerSecond must be a number > 0/],
    [{ app: "shop", hosts: ["x"], upstreams: [], settings: { bandwithBytesPerSecond: 1 } }, /unknown setting "bandwithBytesPerSecond"/],
  ];
  for (const [value, message] of cases) {
    const result = validateRoute(value);
    assert.equal(result.ok, false, JSON.stringify(value));
    if (!result.ok) assert.match(result.message, message);
  }
});

test("parseUpstream splits host and port, including IPv6", () => {
  assert.deepEqual(parseUpstream("127.0.0.1:3000"), { address: "127.0.0.1:3000", host: "127.0.0.1", port: 3000 });
  assert.deepEqual(parseUpstream("[::1]:3000"), { address: "[::1]:3000", host: "::1", port: 3000 });
  assert.equal(parseUpstream("::1:3000"), undefined);
  assert.equal(parseUpstream(":3000"), undefined);
  assert.equal(parseUpstream("host:0"), undefined);
});
