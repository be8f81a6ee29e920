import { test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiData } from "../fake-api.ts";
import type { AuditEntry } from "./audit.ts";
import type { SecurityReport } from "./security.ts";
import { ago, assertFits, lineWith, openPlatformDashboard } from "./platform-harness.ts";

function report(since: string): SecurityReport {
  return {
    since,
    failedSignIns: [
      { at: ago(300), email: "mallory@example.com", sourceIp: "203.0.113.9", via: "web", reason: "wrong password", auditId: 7 },
      { at: ago(900), email: null, sourceIp: "198.51.100.4", via: "ssh", reason: "unknown key", auditId: 8 },
    ],
    denied: [{ at: ago(1200), user: "vic@example.com", action: "config:set", target: "shop", sourceIp: "192.0.2.1", via: "api", auditId: 9 }],
    newKeys: [{ at: ago(3600), user: "dev@example.com", fingerprint: "SHA256:abcdefghijklmnopqrstuv", title: "laptop", auditId: 10 }],
    newTokens: [],
    unusualTraffic: [{ app: "shop", org: "acme", at: ago(60), requestsPerSecond: 42.5, baselinePerSecond: 8.1, ratio: 5.246 }],
  };
}

const ENTRY: AuditEntry = {
  id: 7, at: "2026-12-07T11:55:00Z", user: "mallory@example.com", action: "auth:sign-in", target: null, result: "denied", sourceIp: "203.0.113.9",
  data: { via: "web", reason: "wrong password", attempts: 3 },
};

function routes(): NonNullable<FakeApiData["routes"]> {
  return {
    "GET /security": (req) => [200, report(req.query.get("since") ?? "24h")],
    "GET /audit": (req) => [200, { items: req.query.get("ids") === "7" ? [ENTRY] : [] }],
  };
}

test("Security shows each section with its count and rows, in 80 columns", async (t) => {
  const { frame } = await openPlatformDashboard(t, { routes: routes(), start: "security" });
  const f = await frame((f) => f.includes("unusual traffic"));
  assert.match(f, /the last 24h \(t: the last 7d\)/);
  assert.match(f, /failed sign-ins: 2/);
  assert.match(lineWith(f, "mallory"), /5m ago\s+mallory@example\.com\s+203\.0\.113\.9\s+web\s+wrong password/);
  assert.match(lineWith(f, "198.51"), /15m ago\s+–\s+198\.51\.100\.4\s+ssh\s+unknown key/);
  assert.match(f, /denied actions: 1/);
  assert.match(lineWith(f, "config:set"), /20m ago\s+vic@example\.com\s+config:set\s+shop\s+192\.0\.2\.1/);
  assert.match(f, /new SSH keys: 1/);
  assert.match(lineWith(f, "laptop"), /1h ago\s+dev@example\.com\s+laptop\s+SHA256:abcdef/);
  assert.match(f, /new tokens: none/);
  assert.match(f, /unusual traffic: 1/);
  assert.match(lineWith(f, "×"), /shop\s+acme\s+42\.5\s+8\.1\s+×5\.2/);
  assertFits(f);
});

test("Enter on a failed sign-in opens its audit entry", async (t) => {
  const { frame, press, api } = await openPlatformDashboard(t, { routes: routes(), start: "security" });
  await frame((f) => f.includes("> ") && f.includes("mallory"));
  await press("\r");
  const f = await frame((f) => f.includes("auth:sign-in"));
  assert.ok(api.requests.includes("/api/v1/audit?ids=7"), api.requests.join("\n"));
  assert.match(f.split("\n")[0]!, /· audit ids=7/);
  assert.match(lineWith(f, "auth:sign-in"), /12-07 11:55:00\s+mallory@exam\S*\s+auth:sign-in\s+–\s+denied\s+203\.0\.113\.9/);
  // One entry: its data shows at once.
  assert.match(f, /"reason": "wrong password"/);
  assert.match(f, /"attempts": 3/);
  assertFits(f);
  await press("\u001B");
  await frame((f) => f.includes("unusual traffic"));
});

test("Enter on unusual traffic opens the app; `t` changes the window", async (t) => {
  const { frame, press, api } = await openPlatformDashboard(t, { routes: routes(), start: "security" });
  await frame((f) => f.includes("unusual traffic"));
  await press("t");
  await frame((f) => f.includes("the last 7d (t: the last 1h)"));
  assert.ok(api.requests.includes("/api/v1/security?since=7d"), api.requests.join("\n"));
  await press("jjjj"); // two sign-ins, one denial, one key, then the traffic
  await press("\r");
  await frame((f) => f.split("\n")[0]!.includes("app shop"));
});

test("`:audit` lists the latest entries, and Enter shows one's data", async (t) => {
  const other: AuditEntry = { ...ENTRY, id: 6, at: "2026-12-07T11:50:00Z", user: "admin@example.com", action: "apps:create", target: "shop", result: "ok", data: { org: "acme" } };
  const { frame, press, api } = await openPlatformDashboard(t, {
    start: "overview",
    routes: { "GET /audit": () => [200, { items: [ENTRY, other] }] },
  });
  await press(":audit\r");
  let f = await frame((f) => f.includes("apps:create"));
  assert.ok(api.requests.includes("/api/v1/audit?limit=50"), api.requests.join("\n"));
  assert.match(f, /2 of 2 entries, the latest 50/);
  assert.doesNotMatch(f, /"org"/);
  await press("j\r");
  f = await frame((f) => f.includes('"org": "acme"'));
  assert.match(f, /entry #6, apps:create on shop, data:/);
});

test("someone who is not a platform admin sees only why", async (t) => {
  const { frame } = await openPlatformDashboard(t, {
    start: "security",
    routes: { "GET /security": () => [403, { error: { code: "forbidden", message: "permission denied: only platform admins see security events", requestId: "r1" } }] },
  });
  const f = await frame((f) => f.includes("not allowed"));
  const body = f.split("\n").slice(2, -2).filter((l) => l.trim());
  assert.deepEqual(body, ["not allowed: permission denied: only platform admins see security events"]);
});
