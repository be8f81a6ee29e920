import { test } from "node:test";
import assert from "node:assert/strict";
import type { Me } from "../api-client.ts";
import type { FakeApiData } from "../fake-api.ts";
import type { BuildQueue } from "./deploys.ts";
import { ago, assertFits, footer, lineWith, openPlatformDashboard } from "./platform-harness.ts";

function queue(): BuildQueue {
  return {
    items: [
      { app: "blog", org: "acme", id: null, state: "queued", position: 1, commit: "def5678aa11", builder: null, queuedAt: ago(12), startedAt: null, elapsedSeconds: 12 },
      { app: "shop", org: "acme", id: 42, state: "running", position: null, commit: "abc1234ff00", builder: "builder-1", queuedAt: ago(70), startedAt: ago(65), elapsedSeconds: 65 },
    ],
    recent: [
      {
        app: "shop", org: "acme", id: 41, status: "failed", commit: "9876543210", startedAt: ago(700), finishedAt: ago(600), durationSeconds: 100,
        error: "npm ci failed: the lockfile does not match package.json; run npm install and commit package-lock.json\nmore detail",
      },
      { app: "blog", org: "acme", id: 17, status: "succeeded", commit: "1111111222", startedAt: ago(4000), finishedAt: ago(3900), durationSeconds: 95, error: null },
    ],
  };
}

/** deck's routes for the Deploys screen: the queue, build 42 running (streamed), 41 finished, and cancel. */
function routes(data = queue()): NonNullable<FakeApiData["routes"]> {
  return {
    "GET /builds": () => [200, data],
    "GET /apps/:app/builds/:id": (req) => {
      if (req.params.app === "shop" && req.params.id === "42") {
        // A finished stream, sent in one piece: two lines of output, then the end.
        if (req.query.get("follow") === "true") return [200, "data: -----> Installing dependencies\n\ndata: -----> Build succeeded\n\nevent: end\ndata: \n\n"];
        return [200, { id: 42, status: "running", commit: "abc1234ff00", running: true, lines: ["-----> Installing dependencies"] }];
      }
      if (req.params.app === "shop" && req.params.id === "41") {
        return [200, { id: 41, status: "failed", commit: "9876543210", running: false, lines: ["-----> Node.js app detected", "npm ERR! lockfile mismatch"] }];
      }
      return [404, { error: { code: "not_found", message: `no build ${req.params.id}`, requestId: "r1" } }];
    },
    "POST /apps/:app/builds/cancel": () => [200, { cancelled: [{ id: 42, state: "running" }] }],
  };
}

test("Deploys lists the running build first, then the waiting push, then recent builds, in 80 columns", async (t) => {
  const { frame } = await openPlatformDashboard(t, { routes: routes(), start: "deploys" });
  const f = await frame((f) => f.includes("recent builds"));
  assert.match(f, /build queue: 1 running, 1 waiting/);
  assert.match(lineWith(f, "shop "), /–\s+shop\s+acme\s+abc1234\s+running\s+builder-1\s+1m 0\ds/);
  assert.match(lineWith(f, "queued"), /1\s+blog\s+acme\s+def5678\s+queued\s+–\s+1\ds/);
  const lines = f.split("\n");
  assert.ok(lines.findIndex((l) => l.includes("running")) < lines.findIndex((l) => l.includes("queued")), f);
  assert.match(lineWith(f, "failed"), /shop\s+failed\s+9876543\s+1m 40s\s+10m ago\s+npm ci failed: the lockfile/);
  assert.match(lineWith(f, "succeeded"), /blog\s+succeeded\s+1111111\s+1m 35s\s+1h ago/);
  assertFits(f);
});

test("elapsed times tick between loads", async (t) => {
  const { frame } = await openPlatformDashboard(t, { routes: routes(), start: "deploys" });
  const first = /running\s+builder-1\s+(\S+ \S+)/.exec(await frame((f) => f.includes("builder-1")))![1];
  const later = await frame((f) => !f.includes(first!) && f.includes("builder-1"), 3000);
  assert.match(lineWith(later, "builder-1"), /1m 0[6-9]s/);
});

test("Enter on a running build follows its output live until it ends", async (t) => {
  const { frame, press, api } = await openPlatformDashboard(t, { routes: routes(), start: "deploys" });
  await frame((f) => f.includes("> –  shop") || /> +–\s+shop/.test(f));
  await press("j"); // the running build is first
  await press("k");
  await press("\r");
  const f = await frame((f) => f.includes("build finished"));
  assert.match(f.split("\n")[0]!, /· build shop\/42/);
  assert.match(f, /shop build 42 · build finished · 2 lines/);
  assert.match(f, /-----> Installing dependencies\n-----> Build succeeded/);
  assert.ok(api.requests.includes("/api/v1/apps/shop/builds/42?follow=true"), api.requests.join("\n"));
  assertFits(f);
  await press("\u001B");
  await frame((f) => f.includes("recent builds"));
});

test("Enter on a finished build shows its whole output", async (t) => {
  const { frame, press, api } = await openPlatformDashboard(t, { routes: routes(), start: "deploys" });
  await frame((f) => f.includes("recent builds"));
  await press("jj"); // running, queued, then the first recent build
  await press("\r");
  const f = await frame((f) => f.includes("lockfile mismatch"));
  assert.match(f, /shop build 41 · failed · 2 lines/);
  assert.match(f, /-----> Node\.js app detected\nnpm ERR! lockfile mismatch/);
  assert.ok(!api.requests.some((r) => r.includes("/builds/41?follow")), "a finished build is read, not followed");
});

test("the build screen shows the newest lines at the bottom; k scrolls back and G returns", async (t) => {
  const lines = Array.from({ length: 40 }, (_, i) => `step ${i + 1}`);
  const { frame, press } = await openPlatformDashboard(t, {
    start: "deploys",
    routes: {
      "GET /builds": () => [200, { items: [], recent: [{ ...queue().recent[1]!, app: "big", id: 50 }] }],
      "GET /apps/big/builds/50": () => [200, { id: 50, status: "succeeded", commit: "1111111222", running: false, lines }],
    },
  });
  await frame((f) => f.includes("> big"));
  await press("\r");
  // 24 rows: the header, the rule, the build's own title line and the two footer lines leave 19.
  let f = await frame((f) => f.includes("step 40"));
  assert.match(f, /big build 50 · succeeded · 40 lines/);
  assert.match(f, /^step 22$/m);
  assert.doesNotMatch(f, /^step 21$/m);
  assert.match(f.split("\n").at(-3)!, /^step 40$/);
  await press("kkkkk");
  f = await frame((f) => f.includes("lines 17–35 of 40 (G: newest)"));
  assert.match(f, /^step 17$/m);
  assert.doesNotMatch(f, /^step 36$/m);
  await press("jj");
  await frame((f) => f.includes("lines 19–37 of 40"));
  await press("G");
  f = await frame((f) => f.includes("· 40 lines"));
  assert.match(f.split("\n").at(-3)!, /^step 40$/);
});

test("`c` cancels the app's build once its name is typed, and anything else changes nothing", async (t) => {
  const { frame, press, changes, signedIn } = await openPlatformDashboard(t, { routes: routes(), start: "deploys" });
  await signedIn();
  let f = await frame((f) => f.includes("recent builds") && footer(f).includes("c cancel"));
  await press("c");
  f = await frame((f) => f.includes("cancel the build of shop? (type shop to confirm"));
  await press("nope\r");
  f = await frame((f) => f.includes("not confirmed"));
  assert.match(f, /you typed "nope", not shop; nothing changed/);
  assert.deepEqual(changes(), []);
  await press("c");
  await frame((f) => f.includes("cancel the build of shop?"));
  await press("shop\r");
  f = await frame((f) => f.includes("shop: cancelled 1 build"));
  assert.deepEqual(changes(), ["POST /api/v1/apps/shop/builds/cancel"]);
  // The Enter that answered did not open the build.
  assert.match(f.split("\n")[0]!, /· deploys/);
});

test("read-only: no `c` in the footer, and pressing it sends nothing", async (t) => {
  const { frame, press, changes, signedIn } = await openPlatformDashboard(t, { routes: routes(), start: "deploys", readonly: true });
  await signedIn();
  const f = await frame((f) => f.includes("recent builds") && footer(f).includes("Enter output"));
  assert.doesNotMatch(footer(f), /cancel/);
  await press("c");
  await new Promise((r) => setTimeout(r, 200));
  assert.doesNotMatch(footer(await frame(() => true)), /cancel/);
  assert.doesNotMatch(await frame(() => true), /cancel the build/);
  assert.deepEqual(changes(), []);
});

test("`c` does nothing on the build of an org where the caller is only a viewer", async (t) => {
  const me: Me = {
    id: 2, email: "vic@example.com", name: null, isAdmin: false, scopes: ["deploy"],
    organizations: [{ slug: "acme", role: "viewer" }, { slug: "globex", role: "member" }],
  };
  const { frame, press, changes } = await openPlatformDashboard(t, { routes: routes(), start: "deploys", me });
  // A member of globex may cancel there: the footer offers `c`, but the selected build is acme's.
  await frame((f) => f.includes("recent builds") && footer(f).includes("c cancel"));
  await press("c");
  await new Promise((r) => setTimeout(r, 200));
  assert.doesNotMatch(await frame(() => true), /cancel the build/);
  assert.deepEqual(changes(), []);
});

test("someone who is not a platform admin sees only why", async (t) => {
  const { frame } = await openPlatformDashboard(t, {
    start: "deploys",
    routes: { "GET /builds": () => [403, { error: { code: "forbidden", message: "permission denied: only platform admins see the build queue", requestId: "r1" } }] },
  });
  const f = await frame((f) => f.includes("not allowed"));
  const body = f.split("\n").slice(2, -2).filter((l) => l.trim());
  assert.deepEqual(body, ["not allowed: permission denied: only platform admins see the build queue"]);
});
