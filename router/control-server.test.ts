import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { isDeckError } from "../core/index.ts";
import { createRouterControl, type RouterControlClient } from "./control-client.ts";
import { createControlServer } from "./control-server.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { loadRoutesFile } from "./routes-file.ts";
import { send, startUpstream, waitFor } from "./test-support.ts";

interface Router {
  control: RouterControlClient;
  socket: string;
  routesFile: string;
  port: number;
}

/** A proxy and its control server in this process, with the control API on a temp unix socket. */
async function startRouter(t: TestContext): Promise<Router> {
  const dir = await mkdtemp(join(tmpdir(), "deck-router-control-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const table = new RouteTable();
  // No per-client rate limit: these tests drive thousands of requests a second from one address.
  const proxy = createProxyServer({ table, limits: { rateLimitRps: 0 } });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  const socket = join(dir, "router.sock");
  const routesFile = join(dir, "routes.json");
  const server = createControlServer({ table, inflight: (u) => proxy.inflight(u), routesFile });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { control: createRouterControl(socket), socket, routesFile, port: (proxy.server.address() as AddressInfo).port };
}

/** Raw call to the control socket, for inputs the typed client would never send. */
function rawCall(socket: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath: socket, method, path, headers: { Host: "router" } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

test("setRoute, removeRoute and replaceAll are live when they resolve and saved to the routes file", async (t) => {
  const a = await startUpstream("a");
  const b = await startUpstream("b");
  t.after(() => Promise.all([a.close(), b.close()]));
  const { control, routesFile, port } = await startRouter(t);

  await control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [a.address] });
  assert.equal((await send({ port, host: "shop.localhost" })).body, "a");
  const saved = await loadRoutesFile(routesFile);
  assert.deepEqual(saved, { ok: true, missing: false, routes: [{ app: "shop", hosts: ["shop.localhost"], upstreams: [a.address] }] });

  await control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [b.address] });
  assert.equal((await send({ port, host: "shop.localhost" })).body, "b");

  await control.replaceAll([
    { app: "blog", hosts: ["blog.localhost"], upstreams: [a.address] },
    { app: "wiki", hosts: ["wiki.localhost"], upstreams: [] },
  ]);
  assert.equal((await send({ port, host: "shop.localhost" })).status, 404);
  assert.equal((await send({ port, host: "blog.localhost" })).body, "a");
  assert.equal((await send({ port, host: "wiki.localhost" })).status, 503);
  assert.deepEqual(
    (await control.routes()).map((r) => r.app),
    ["blog", "wiki"],
  );

  await control.removeRoute("blog");
  assert.equal((await send({ port, host: "blog.localhost" })).status, 404);
  const file = JSON.parse(await readFile(routesFile, "utf8")) as { routes: { app: string }[] };
  assert.deepEqual(
    file.routes.map((r) => r.app),
    ["wiki"],
  );
  assert.deepEqual(await control.health(), { ok: true, pid: process.pid, worker: process.pid, routes: 1 });
});

test("rejects malformed bodies with 400 and a one-line message, and conflicts with 409", async (t) => {
  const { control, socket } = await startRouter(t);
  const cases: [string, string, string | undefined, number, RegExp][] = [
    ["PUT", "/routes/shop", "{not json", 400, /not valid JSON/],
    ["PUT", "/routes/shop", JSON.stringify({ app: "shop", hosts: "shop.localhost", upstreams: [] }), 400, /hosts must be a non-empty array/],
    ["PUT", "/routes/shop", JSON.stringify({ app: "other", hosts: ["x.localhost"], upstreams: [] }), 400, /does not match the path/],
    ["PUT", "/routes/shop", JSON.stringify({ app: "shop", hosts: ["x.localhost"], upstreams: ["nowhere"] }), 400, /is not "host:port"/],
    ["PUT", "/routes", JSON.stringify({ app: "shop" }), 400, /expects a JSON array/],
    ["GET", "/inflight", undefined, 400, /missing \?upstream/],
    ["POST", "/routes", "[]", 405, /not supported/],
    ["GET", "/nope", undefined, 404, /no such endpoint/],
  ];
  for (const [method, path, body, status, message] of cases) {
    const reply = await rawCall(socket, method, path, body);
    assert.equal(reply.status, status, `${method} ${path} ${body}`);
    const error = (JSON.parse(reply.body) as { error: { message: string } }).error;
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
  }

  await control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [] });
  await assert.rejects(
    control.setRoute({ app: "blog", hosts: ["shop.localhost"], upstreams: [] }),
    (e: unknown) => isDeckError(e) && e.code === "route_conflict" && e.data.status === 409,
  );
  assert.deepEqual(
    (await control.routes()).map((r) => r.app),
    ["shop"],
    "a refused change leaves the table as it was",
  );
});

test("inflight() reports a slow request while it runs and zero after it finishes", async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const slow = await startUpstream("slow", (req, res) => void released.then(() => res.end("done")));
  t.after(() => slow.close());
  const { control, port } = await startRouter(t);
  await control.setRoute({ app: "slow", hosts: ["slow.localhost"], upstreams: [slow.address] });

  assert.equal(await control.inflight(slow.address), 0);
  const pending = send({ port, host: "slow.localhost" });
  await waitFor(async () => (await control.inflight(slow.address)) === 1, 5_000, "inflight to reach 1");
  // Moving the route away does not hide the request still running on the old upstream.
  await control.setRoute({ app: "slow", hosts: ["slow.localhost"], upstreams: [] });
  assert.equal(await control.inflight(slow.address), 1);
  release();
  assert.equal((await pending).body, "done");
  await waitFor(async () => (await control.inflight(slow.address)) === 0, 5_000, "inflight to return to 0");
});

test("switching an app between two upstreams under load loses no request", async (t) => {
  const blue = await startUpstream("blue");
  const green = await startUpstream("green");
  t.after(() => Promise.all([blue.close(), green.close()]));
  const { control, port } = await startRouter(t);
  await control.setRoute({ app: "web", hosts: ["web.localhost"], upstreams: [blue.address] });

  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.after(() => agent.destroy());
  const seen = { blue: 0, green: 0, other: 0 };
  const failures: string[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      try {
        const reply = await send({ port, host: "web.localhost", agent });
        if (reply.status === 200 && (reply.body === "blue" || reply.body === "green")) seen[reply.body]++;
        else failures.push(`${reply.status} ${reply.body}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  const workers = Array.from({ length: 16 }, worker);
  for (let i = 0; i < 20; i++) {
    const target = i % 2 === 0 ? green : blue;
    await control.setRoute({ app: "web", hosts: ["web.localhost"], upstreams: [target.address] });
    const expected = i % 2 === 0 ? "green" : "blue";
    assert.equal((await send({ port, host: "web.localhost" })).body, expected, `flip ${i} is live when setRoute resolves`);
    await new Promise((r) => setTimeout(r, 20));
  }
  running = false;
  await Promise.all(workers);
  assert.deepEqual(failures, []);
  assert.ok(seen.blue > 0 && seen.green > 0, `both upstreams served traffic: ${JSON.stringify(seen)}`);
});

test("the client reports router_unavailable when nothing answers on the socket", async () => {
  const socket = join(tmpdir(), `deck-no-router-${process.pid}.sock`);
  const control = createRouterControl(socket, { retryMs: 300 });
  await assert.rejects(control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [] }), (e: unknown) => {
    return isDeckError(e) && e.code === "router_unavailable" && /^the router is not answering on its control socket \(ENOENT\)$/.test(e.message) && e.data.socketPath === socket;
  });
  await assert.rejects(control.inflight("127.0.0.1:1"), (e: unknown) => isDeckError(e) && e.code === "router_unavailable");
  assert.deepEqual(await control.view("shop"), { answering: false, reason: "ENOENT" });
});

test("a call made while no router listens goes through once one does (a worker being replaced)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-control-retry-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, "router.sock");
  const table = new RouteTable();
  const server = createControlServer({ table, inflight: () => 0, routesFile: join(dir, "routes.json") });
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const route = { app: "late", hosts: ["late.localhost"], upstreams: ["127.0.0.1:9"] };
  const pending = createRouterControl(socket).setRoute(route);
  await new Promise((r) => setTimeout(r, 300));
  await new Promise<void>((r) => server.listen(socket, r));
  await pending;
  assert.deepEqual(table.routes().map((r) => r.app), ["late"]);
  const control = createRouterControl(socket);
  assert.deepEqual(await control.view("late"), { answering: true, route });
  assert.deepEqual(await control.view("other"), { answering: true, route: null });
});
