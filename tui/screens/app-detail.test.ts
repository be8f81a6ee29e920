import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { maskValue, sparkline } from "../../core/index.ts";
import { createApiClient } from "../api-client.ts";
import { App, type AppProps } from "../app.ts";
import { startFakeApi, waitForFrame, type FakeApiData, type FakeRequest } from "../fake-api.ts";
import { allowedAppActions, parseFormation } from "./app-actions.ts";
import { APP_DETAIL_SCREEN } from "./app-detail.ts";
import { SCREENS } from "./index.ts";

const SECRET = "postgres://shop:hunter2-very-secret@db.internal:5432/shop";
const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000).toISOString();

/** A deck with one app, shop, answering each of the app screen's reads; `sent` holds the bodies of changes. */
function shopDeck(role: string) {
  const sent: Record<string, unknown[]> = {};
  const record = (name: string) => (req: FakeRequest): unknown => ((sent[name] ??= []).push(req.body), req.body);
  let maintenance = false;
  const data: FakeApiData = {
    token: "tok",
    apps: [{ name: "shop", status: "running", framework: "node", createdAt: "2026-12-01T00:00:00Z" }],
    metrics: { shop: { requestsPerSecond: [10, 20, 42.5], p95Ms: 180, rssBytes: 300 * 1024 * 1024, release: 7 } },
    deployments: {},
    health: null,
    routes: {
      "GET /apps/:app": () => [200, {
        name: "shop", status: "running", stopped: false, maintenance, router: "serving", role,
        url: "https://shop.apps.example.com", framework: "node", healthCheckPath: "/",
        release: { version: 7, description: "Deploy 4f2a9c1", commit: "4f2a9c1d0e5b" },
        formation: { web: 2, worker: 1 },
        processes: [
          { name: "web.1", state: "up", port: 5001, restarts: 0, startedAt: hoursAgo(2) },
          { name: "web.2", state: "up", port: 5002, restarts: 3, startedAt: hoursAgo(1) },
          { name: "worker.1", state: "crashed", port: null, restarts: 9, startedAt: null },
        ],
      }],
      "GET /apps/:app/releases": () => [200, {
        items: [
          { version: 7, status: "live", description: "Deploy 4f2a9c1", commit: "4f2a9c1d0e5b", createdAt: hoursAgo(3) },
          { version: 6, status: "superseded", description: "Set DATABASE_URL", commit: "9b8c7d6e5f4a", createdAt: hoursAgo(26) },
          { version: 5, status: "failed", description: "Deploy 1a2b3c4", commit: "1a2b3c4d5e6f", createdAt: hoursAgo(50) },
        ],
        next: null,
      }],
      "GET /apps/:app/domains": () => [200, {
        items: [
          { domain: "shop.apps.example.com", default: true, sslStatus: "issued", tls: "issued (expires 2027-02-01)", expiresAt: "2027-02-01T00:00:00Z", error: null },
          { domain: "www.shop-example.com", sslStatus: "failed", tls: "failed: no DNS record", expiresAt: null, error: "no DNS record for www.shop-example.com" },
        ],
      }],
      // As deck answers: masked unless revealed.
      "GET /apps/:app/config": (req) => {
        const vars: Record<string, string> = { DATABASE_URL: SECRET, NODE_ENV: "production" };
        return [200, req.query.get("reveal") === "true" ? vars : Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, maskValue(v)]))];
      },
      "GET /apps/:app/logs": () => [200, "data: 2026-12-07T12:00:01Z web.1 listening on 5001\n\ndata: 2026-12-07T12:00:02Z web.1 GET /cart 200\n\n"],
      "POST /apps/:app/restart": (req) => (record("restart")(req), [200, { output: [] }]),
      "PATCH /apps/:app/formation": (req) => [200, { output: [], formation: { worker: 1, ...(record("scale")(req) as object) } }],
      "POST /apps/:app/rollback": (req) => {
        const body = record("rollback")(req) as { version?: number };
        return [200, { output: [], release: 8, target: body.version ?? 6 }];
      },
      "POST /apps/:app/maintenance": (req) => {
        maintenance = (record("maintenance")(req) as { enabled: boolean }).enabled;
        return [200, { app: "shop", maintenance, stopped: false }];
      },
    },
  };
  return { data, sent };
}

/** The real dashboard at 80×24, on the apps table, with Enter pressed on shop. */
async function openShop(t: TestContext, options: { role?: string; props?: Partial<AppProps> } = {}) {
  const { data, sent } = shopDeck(options.role ?? "owner");
  const api = await startFakeApi(data);
  const client = createApiClient({ url: api.url, token: data.token });
  const screens = [...SCREENS.filter((d) => d.name !== "app"), APP_DETAIL_SCREEN];
  const ui = render(React.createElement(App, { client, color: false, screens, start: "apps", ...options.props }));
  t.after(async () => {
    ui.unmount();
    await api.close();
  });
  Object.defineProperty(ui.stdout, "columns", { get: () => 80 });
  Object.defineProperty(ui.stdout, "rows", { get: () => 24 });
  ui.stdout.emit("resize");
  const frame = (test: (f: string) => boolean, timeoutMs?: number) => waitForFrame(ui.lastFrame, test, timeoutMs);
  // Each character is a key; an escape sequence (an arrow) is one key as a whole.
  const press = async (keys: string) => {
    for (const k of keys.match(/\u001B\[[A-D]|[^]/gu) ?? []) {
      ui.stdin.write(k);
      await new Promise((r) => setTimeout(r, 15));
    }
  };
  await frame((f) => f.includes("1 of 1 apps"));
  await press("\r");
  await frame((f) => f.includes("role "));
  const changes = () => api.requests.filter((r) => !r.startsWith("/"));
  return { api, ui, frame, press, sent, changes };
}

const within80 = (f: string) => f.split("\n").every((l) => l.length <= 80);

test("the app screen shows a header and its seven tabs, each within 80 columns", async (t) => {
  const { frame, press } = await openShop(t);
  let f = await frame((f) => f.includes("requests/s") && within80(f));
  // The URL gives way so that maintenance and the role still show.
  assert.match(f, /^shop {2}running {2}v7 4f2a9c1 {2}https:\/\/shop\.apps\.examp… {2}maintenance off {2}role owner$/m);
  assert.match(f, /\[1 metrics\] 2 releases/);
  assert.ok(f.includes(`requests/s     42.5  ${sparkline([10, 20, 42.5])}`), f);
  assert.match(f, /p95\s+180 ms/);
  assert.match(f, /memory\s+300 MiB/);

  const tabs: [string, (f: string) => boolean, RegExp[]][] = [
    ["2", (f) => f.includes("DESCRIPTION"), [/> v7\s+live\s+Deploy 4f2a9c1\s+4f2a9c1\s+3h ago/, /v6\s+superseded\s+Set DATABASE_URL\s+9b8c7d6\s+1d ago/, /v5\s+failed/]],
    ["3", (f) => f.includes("RESTARTS"), [/formation web=2 worker=1/, /web\.2\s+up\s+5002\s+3\s+1h ago/, /worker\.1\s+crashed\s+–\s+9\s+–/]],
    ["4", (f) => f.includes("GET /cart"), [/^2026-12-07T12:00:01Z web\.1 listening on 5001$/m, /^2026-12-07T12:00:02Z web\.1 GET \/cart 200$/m]],
    ["5", (f) => f.includes("CERTIFICATE"), [/shop\.apps\.example\.com\s+issued\s+2027-02-01\s+the app's default name/, /www\.shop-example\.com\s+failed\s+–\s+no DNS record/]],
    ["6", (f) => f.includes("VALUE"), [/2 config vars, values masked/, /DATABASE_URL\s+po\*{8}/, /NODE_ENV\s+pr\*{8}/]],
    ["7", (f) => f.includes("events (live"), [/none since the dashboard started/]],
  ];
  for (const [key, ready, expect] of tabs) {
    await press(key);
    f = await frame((f) => ready(f) && within80(f));
    for (const e of expect) assert.match(f, e, `tab ${key}`);
    for (const line of f.split("\n")) assert.ok(line.length <= 80, `tab ${key}: ${line.length}: ${line}`);
  }
  // Tab (and →) goes on to the next tab, wrapping around; ← goes back.
  await press("\t");
  f = await frame((f) => f.includes("[1 metrics]"));
  await press("\u001B[C");
  await frame((f) => f.includes("[2 releases]"));
  await press("\u001B[D");
  await frame((f) => f.includes("[1 metrics]"));
});

test("config values are shown masked, and the screen never asks deck to reveal them", async (t) => {
  const { frame, press, api } = await openShop(t);
  await press("6");
  const f = await frame((f) => f.includes("DATABASE_URL"));
  assert.ok(!f.includes("hunter2") && !f.includes("production"), f);
  const configReads = api.requests.filter((r) => r.includes("/config"));
  assert.ok(configReads.length > 0);
  assert.ok(api.requests.every((r) => !r.includes("reveal")), api.requests.join("\n"));
});

test("an owner sees the action keys; r restarts after y", async (t) => {
  const { frame, press, changes, sent } = await openShop(t);
  let f = await frame((f) => f.includes("r restart"));
  assert.match(f, /^r restart {2}S scale {2}b rollback {2}m maintenance on$/m);
  assert.match(f.split("\n").at(-1)!, /Tab next tab$/);
  await press("r");
  f = await frame((f) => f.includes("restart shop (type y"));
  // (Frames end their lines without spaces.) The key that asked is not typed into the answer.
  assert.match(f, /^restart shop \(type y to confirm, Esc cancels\):$/m);
  await press("y\r");
  f = await frame((f) => f.includes("shop restarted"));
  assert.deepEqual(changes(), ["POST /api/v1/apps/shop/restart"]);
  assert.equal(sent.restart?.length, 1);
});

test("m turns maintenance mode on after y, and the header follows", async (t) => {
  const { frame, press, sent } = await openShop(t);
  await frame((f) => f.includes("m maintenance on"));
  await press("m");
  await frame((f) => f.includes("maintenance on for shop (type y"));
  await press("y\r");
  const f = await frame((f) => f.includes("maintenance on  role owner"));
  assert.deepEqual(sent.maintenance, [{ enabled: true }]);
  assert.match(f, /m maintenance off/);
});

test("S scales to what was typed, and refuses a malformed answer without sending anything", async (t) => {
  const { frame, press, changes, sent } = await openShop(t);
  await frame((f) => f.includes("S scale"));
  await press("S");
  await frame((f) => f.includes("scale (e.g. web=2 worker=1):"));
  await press("web=2\r");
  await frame((f) => f.includes("shop scaled: worker=1 web=2"));
  assert.deepEqual(changes(), ["PATCH /api/v1/apps/shop/formation"]);
  assert.deepEqual(sent.scale, [{ web: 2 }]);
  await press("S");
  await frame((f) => f.includes("scale (e.g."));
  await press("web=two\r");
  const f = await frame((f) => f.includes("nothing scaled"));
  assert.match(f, /^nothing scaled: "web=two" is not TYPE=COUNT, COUNT 0–50 \(e\.g\. web=2\)$/m);
  assert.equal(changes().length, 1);
});

test("b rolls back to the selected release only once the app's name is typed", async (t) => {
  const { frame, press, changes, sent } = await openShop(t);
  await press("2");
  await frame((f) => f.includes("> v7"));
  await press("j");
  await frame((f) => f.includes("> v6"));
  await press("b");
  await frame((f) => f.includes("roll back shop to v6 (type shop to confirm"));
  await press("y\r");
  await frame((f) => f.includes("not confirmed"));
  assert.deepEqual(changes(), []);
  await press("b");
  await frame((f) => f.includes("roll back shop to v6 (type shop"));
  await press("shop\r");
  await frame((f) => f.includes("shop rolled back to v6 (as v8)"));
  assert.deepEqual(changes(), ["POST /api/v1/apps/shop/rollback"]);
  assert.deepEqual(sent.rollback, [{ version: 6 }]);
  // Elsewhere than the releases tab, b means the release before the live one: deck picks it.
  await press("1b");
  await frame((f) => f.includes("roll back shop to the release before the live one"));
  await press("shop\r");
  await frame((f) => f.includes("shop rolled back to v6"));
  assert.deepEqual(sent.rollback, [{ version: 6 }, {}]);
});

test("a viewer sees no action keys, and r does nothing", async (t) => {
  const { frame, press, changes } = await openShop(t, { role: "viewer" });
  let f = await frame((f) => f.includes("role viewer") && f.includes("requests/s"));
  assert.doesNotMatch(f, /r restart|S scale|b rollback|m maintenance/);
  await press("rSbm");
  await new Promise((r) => setTimeout(r, 200));
  f = await frame(() => true);
  assert.doesNotMatch(f, /\(type |scale \(e\.g\./);
  assert.deepEqual(changes(), []);
});

test("read-only, even an owner sees no action keys, and r does nothing", async (t) => {
  const { frame, press, changes } = await openShop(t, { props: { readonly: true } });
  let f = await frame((f) => f.includes("role owner") && f.includes("requests/s"));
  assert.doesNotMatch(f, /r restart|S scale|b rollback|m maintenance/);
  await press("r");
  await new Promise((r) => setTimeout(r, 200));
  f = await frame(() => true);
  assert.doesNotMatch(f, /\(type /);
  assert.deepEqual(changes(), []);
});

test("the actions a role and a token's scopes allow are the ones deck's policy grants", () => {
  const all = ["restart", "scale", "rollback", "maintenance"];
  const admin = ["admin"];
  assert.deepEqual([...allowedAppActions("viewer", admin)], []);
  assert.deepEqual([...allowedAppActions("member", admin)], ["restart"]);
  assert.deepEqual([...allowedAppActions("admin", admin)], all);
  assert.deepEqual([...allowedAppActions("owner", admin)], all);
  assert.deepEqual([...allowedAppActions("platform-admin", admin)], all);
  // A token that may only deploy may restart, not scale; a read token nothing.
  assert.deepEqual([...allowedAppActions("owner", ["deploy"])], ["restart"]);
  assert.deepEqual([...allowedAppActions("owner", ["read"])], []);
  // What is not known allows nothing.
  assert.deepEqual([...allowedAppActions("superuser", admin)], []);
  assert.deepEqual([...allowedAppActions(null, admin)], []);
  assert.deepEqual([...allowedAppActions("owner", undefined)], []);
});

test("a typed formation is read as TYPE=COUNT pairs, or refused with the reason", () => {
  assert.deepEqual(parseFormation("web=2 worker=1"), { ok: true, formation: { web: 2, worker: 1 } });
  assert.deepEqual(parseFormation(" web=0, clock=1 "), { ok: true, formation: { web: 0, clock: 1 } });
  const refused = (text: string) => {
    const r = parseFormation(text);
    assert.equal(r.ok, false, text);
    return r.ok ? "" : r.message;
  };
  assert.match(refused(""), /give TYPE=COUNT/);
  assert.match(refused("web=two"), /"web=two" is not TYPE=COUNT/);
  assert.match(refused("web=51"), /COUNT 0–50/);
  assert.match(refused("web"), /"web" is not TYPE=COUNT/);
  assert.match(refused("Web=1"), /"Web" is not a process type/);
  assert.match(refused("web=1 web=2"), /web is given twice/);
});
