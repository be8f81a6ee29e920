import { test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import type { Me } from "../api-client.ts";
import type { FakeApiData } from "../fake-api.ts";
import { ADMIN_ME, assertFits, footer, openDashboard } from "./admin-harness.ts";
import type { SupportUser } from "./support.ts";

function bob(): SupportUser {
  return {
    email: "bob@example.com", name: "Bob Builder", isAdmin: false, createdAt: "2026-03-04T10:00:00Z",
    suspendedAt: "2026-12-01T09:00:00Z", suspendReason: "card declined", mfaEnabled: true, lastSignInAt: "2026-12-06T08:30:00Z",
    orgs: [{ slug: "acme", role: "owner" }, { slug: "globex", role: "viewer" }],
    apps: [{ name: "shop", org: "acme", status: "running" }, { name: "blog", org: "acme", status: "crashed" }],
    keys: 2, tokens: 3,
    recentErrors: [
      { at: "2026-12-06T10:15:00Z", app: "blog", kind: "deploy", message: "npm ci failed: ENOTFOUND registry.npmjs.org (a message far longer than the screen is wide)" },
      { at: "2026-12-05T07:00:00Z", app: null, kind: "sign-in", message: "wrong password" },
    ],
  };
}

/**
 * The routes the support flow reads, recording the `x-deck-view-as` header of each apps list.
 * `/users/:email` would also match `/users/me`, which answers as deck does: who is signed in.
 */
function routes(viewAsSeen: (string | undefined)[] = [], me: Me = ADMIN_ME): FakeApiData["routes"] {
  const seen = (h: IncomingHttpHeaders) => viewAsSeen.push(h["x-deck-view-as"] as string | undefined);
  return {
    "GET /users": () => [200, { items: [{ ...bob(), suspendedBy: "admin@example.com" }], next: null }],
    "GET /users/:email": (r) => (r.params.email === "me" ? [200, me] : r.params.email === "bob@example.com" ? [200, bob()] : [404, { error: { code: "not_found", message: `no user with email ${r.params.email}`, requestId: "r" } }]),
    "GET /apps": (r) => {
      seen(r.headers);
      return [200, { items: r.headers["x-deck-view-as"] ? [{ name: "shop", status: "running", framework: null, createdAt: "2026-12-01T00:00:00Z" }] : [], next: null }];
    },
  };
}

test("Enter on a user opens Support: identity, state, MFA, sign-in, orgs, apps, credentials and recent errors within 80 columns", async (t) => {
  const { frame, press } = await openDashboard(t, { start: "users", routes: routes() });
  await frame((f) => f.includes("bob@example.com"));
  await press("\r");
  const f = await frame((f) => f.includes("recent errors"));
  assertFits(f);
  assert.match(f.split("\n")[0]!, /· support bob@example\.com/);
  assert.match(f, /Bob Builder <bob@example\.com> · joined 2026-03-04/);
  assert.match(f, /state suspended since 2026-12-01: card declined/);
  assert.match(f, /MFA on · last sign-in 2026-12-06 08:30 UTC \(\d+d ago\)/);
  assert.match(f, /SSH keys 2 · tokens 3/);
  assert.match(f, /orgs acme \(owner\), globex \(viewer\)/);
  assert.match(f, /> shop\s+acme\s+running/);
  assert.match(f, /blog\s+acme\s+crashed/);
  assert.match(f, /recent errors, 7 days \(2\)/);
  assert.match(f, /2026-12-06 10:15\s+blog\s+deploy\s+npm ci failed: ENOTFOUND.*…/);
  assert.match(f, /2026-12-05 07:00\s+–\s+sign-in\s+wrong password/);
  assert.match(footer(f), /f find {2}Enter open app {2}v view as/);
  await press("j\r");
  await frame((f) => f.split("\n")[0]!.includes("· app blog"));
});

test("without a user Support asks for an email; `f` asks again", async (t) => {
  const { frame, answer, press } = await openDashboard(t, { start: "support", routes: routes() });
  await frame((f) => f.includes("find user by email:"));
  await answer("nobody@example.com");
  let f = await frame((f) => f.includes("no user with email nobody@example.com"));
  assert.match(f, /support: nobody@example\.com/);
  await press("f");
  await frame((f) => f.includes("find user by email:"));
  await answer("bob@example.com");
  f = await frame((f) => f.includes("SSH keys 2"));
  assert.doesNotMatch(f, /no user with email/);
  await press("f");
  await frame((f) => f.includes("find user by email:"));
  await press("\u001B");
  f = await frame((f) => f.includes("cancelled"));
  assert.match(f, /press f|SSH keys 2/);
});

test("`v` views deck as the user: requests carry X-Deck-View-As, the header says so; `x` stops", async (t) => {
  const viewAs: (string | undefined)[] = [];
  const { frame, press } = await openDashboard(t, { start: "users", routes: routes(viewAs) });
  await frame((f) => f.includes("bob@example.com"));
  await press("\r");
  await frame((f) => f.includes("v view as"));
  await press("v");
  let f = await frame((f) => f.includes("shop") && f.includes("NAME"));
  assert.match(f.split("\n")[0]!, /· apps · viewing as bob@example\.com ·/);
  assert.equal(viewAs.at(-1), "bob@example.com");
  await press(":support\r");
  f = await frame((f) => f.includes("x stops viewing"));
  assert.match(f, /viewing as bob@example\.com · read-only — x stops viewing/);
  assert.doesNotMatch(f, /find user by email/);
  const before = viewAs.length;
  await press("x");
  f = await frame((f) => f.includes("back to your own view") && f.includes("0 of 0 apps"));
  assert.doesNotMatch(f.split("\n")[0]!, /viewing as/);
  assert.equal(viewAs.length > before, true);
  assert.equal(viewAs.at(-1), undefined);
});

test("someone who is not a platform admin has no `v`", async (t) => {
  const member = { ...ADMIN_ME, email: "dev@example.com", isAdmin: false };
  const { frame, press, api } = await openDashboard(t, { start: "support", me: member, routes: routes([], member) });
  await frame(() => api.requests.includes("/api/v1/users/me"));
  await frame((f) => f.includes("find user by email:"));
  await press("bob@example.com\r");
  const f = await frame((f) => f.includes("SSH keys 2"));
  assert.doesNotMatch(footer(f), /view as/);
  assert.doesNotMatch(f, /v views deck/);
  await press("v");
  await new Promise((r) => setTimeout(r, 100));
  assert.doesNotMatch((await frame(() => true)).split("\n")[0]!, /viewing as/);
});
