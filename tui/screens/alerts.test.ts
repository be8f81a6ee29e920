import { test } from "node:test";
import assert from "node:assert/strict";
import type { Me } from "../api-client.ts";
import type { FakeApiData } from "../fake-api.ts";
import type { AlertsOverview } from "./alerts.ts";
import { ago, assertFits, footer, lineWith, openPlatformDashboard } from "./platform-harness.ts";

function alerts(): AlertsOverview {
  return {
    firing: [
      { app: "blog", org: "acme", ruleId: "down", rule: "down", kind: "down", state: "pending", value: null, since: ago(90) },
      { app: "shop", org: "acme", ruleId: "7", rule: "http_5xx > 5% for 5m", kind: "http_5xx", state: "firing", value: "7.2%", since: ago(720) },
    ],
    history: [
      { at: "2026-12-07T11:48:00Z", app: "shop", org: "acme", rule: "http_5xx > 5% for 5m", status: "firing", value: "7.2%" },
      { at: "2026-12-07T09:10:00Z", app: "api", org: "globex", rule: "p95 > 800ms for 10m", status: "rolled_back", value: "1.2 s" },
    ],
  };
}

function routes(silences: unknown[]): NonNullable<FakeApiData["routes"]> {
  return {
    "GET /alerts": () => [200, alerts()],
    "POST /apps/:app/alerts/silence": (req) => {
      silences.push({ app: req.params.app, body: req.body });
      return [200, { app: req.params.app, silencedUntil: "2026-12-07T13:00:00.000Z" }];
    },
  };
}

test("Alerts shows the rules firing first, then pending, then the history, in 80 columns", async (t) => {
  const { frame } = await openPlatformDashboard(t, { routes: routes([]), start: "alerts" });
  const f = await frame((f) => f.includes("history"));
  assert.match(f, /alerts: 1 firing, 1 pending, 0 silenced/);
  assert.match(lineWith(f, "12m ago"), /firing\s+shop\s+acme\s+http_5xx > 5% for 5m\s+7\.2%\s+12m ago/);
  assert.match(lineWith(f, "blog"), /pending\s+blog\s+acme\s+down\s+–\s+1m ago/);
  const lines = f.split("\n");
  assert.ok(lines.findIndex((l) => l.includes("12m ago")) < lines.findIndex((l) => l.includes("pending  blog")), f);
  assert.match(f, /history \(latest 2\)/);
  assert.match(lineWith(f, "rolled_back"), /12-07 09:10:00\s+api\s+p95 > 800ms for 10m\s+rolled_back\s+1\.2 s/);
  assertFits(f);
});

test("`S` and a duration silence the selected app's alerts", async (t) => {
  const silences: unknown[] = [];
  const { frame, press, changes, signedIn } = await openPlatformDashboard(t, { routes: routes(silences), start: "alerts" });
  await signedIn();
  await frame((f) => f.includes("history") && footer(f).includes("S silence"));
  await press("S");
  await frame((f) => f.includes("silence alerts of shop for (e.g. 1h, 30m):"));
  await press("1h\r");
  const f = await frame((f) => f.includes("silenced until"));
  assert.match(f, /alerts of shop silenced until 12-07 13:00:00 UTC/);
  assert.deepEqual(changes(), ["POST /api/v1/apps/shop/alerts/silence"]);
  assert.deepEqual(silences, [{ app: "shop", body: { duration: "1h" } }]);
  // The Enter that answered did not open the app.
  assert.match(f.split("\n")[0]!, /· alerts/);
});

test("only those who may manage an org's alerts get `S`", async (t) => {
  const member: Me = { id: 3, email: "mo@example.com", name: null, isAdmin: false, scopes: ["write"], organizations: [{ slug: "acme", role: "member" }] };
  const a = await openPlatformDashboard(t, { routes: routes([]), start: "alerts", me: member });
  await a.signedIn();
  await new Promise((r) => setTimeout(r, 200));
  assert.doesNotMatch(footer(await a.frame((f) => f.includes("history") && footer(f).includes("Enter app"))), /silence/);
  // An admin of globex may silence its apps: the footer offers `S`, but the selected alert is acme's.
  const mixed: Me = { ...member, organizations: [{ slug: "acme", role: "member" }, { slug: "globex", role: "admin" }] };
  const { frame, press, changes } = await openPlatformDashboard(t, { routes: routes([]), start: "alerts", me: mixed });
  await frame((f) => f.includes("history") && footer(f).includes("S silence"));
  await press("S");
  await new Promise((r) => setTimeout(r, 200));
  assert.doesNotMatch(await frame(() => true), /silence alerts of/);
  assert.deepEqual(changes(), []);
});

test("Enter opens the selected alert's app", async (t) => {
  const { frame, press } = await openPlatformDashboard(t, { routes: routes([]), start: "alerts" });
  await frame((f) => f.includes("history"));
  await press("j\r"); // shop (firing), then blog (pending)
  const f = await frame((f) => f.split("\n")[0]!.includes("app blog"));
  assert.match(f, /app blog/);
});
