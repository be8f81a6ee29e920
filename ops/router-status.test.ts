import assert from "node:assert/strict";
import { test } from "node:test";
import { describeRouterStatus, routerStatusOf } from "./router-status.ts";

const route = (upstreams: string[], maintenance = false) => ({ app: "web", hosts: ["web.localhost"], upstreams, settings: maintenance ? { maintenance: true } : {} });
const live = { upstreams: ["127.0.0.1:5001", "127.0.0.1:5002"], maintenance: false };

test("the router's own answer decides the Router line of a report", () => {
  const cases: [Parameters<typeof routerStatusOf>[0], string][] = [
    [{ answering: true, route: route(["127.0.0.1:5002", "127.0.0.1:5001"]) }, "serving the app"],
    [{ answering: false, reason: "ECONNREFUSED" }, "not answering (restarting)"],
    [{ answering: true, route: null }, "not serving the app: the router has no route for it"],
    [{ answering: true, route: route(["127.0.0.1:4001"]) }, "not serving the live release: it routes to 127.0.0.1:4001, not 127.0.0.1:5001, 127.0.0.1:5002"],
    [{ answering: true, route: route([], true) }, "not serving the live release: it routes to the maintenance page, not 127.0.0.1:5001, 127.0.0.1:5002"],
    [undefined, "not checked (no router of this server's own)"],
  ];
  for (const [view, line] of cases) assert.equal(describeRouterStatus(routerStatusOf(view, live)), line, JSON.stringify(view));
  assert.deepEqual(routerStatusOf({ answering: true, route: route([], true) }, { upstreams: [], maintenance: true }), { state: "maintenance" });
  assert.equal(routerStatusOf({ answering: true, route: route(["127.0.0.1:5001"]) }, { upstreams: [], maintenance: true }).state, "stale");
});
