import { test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiData } from "../fake-api.ts";
import { ADMIN_ME, assertFits, footer, openDashboard } from "./admin-harness.ts";
import type { UserRow } from "./users.ts";

function users(): UserRow[] {
  return [
    { email: "admin@example.com", name: "Admin", isAdmin: true, createdAt: "2026-01-02T10:00:00Z", suspendedAt: null, suspendReason: null, mfaEnabled: true },
    { email: "bob@example.com", name: "Bob Builder", isAdmin: false, createdAt: "2026-03-04T10:00:00Z", suspendedAt: null, suspendReason: null, mfaEnabled: false },
    { email: "eve@example.com", name: null, isAdmin: false, createdAt: "2026-05-06T10:00:00Z", suspendedAt: "2026-11-30T08:00:00Z", suspendReason: "spam", mfaEnabled: false },
  ];
}

/** `GET /users` over `list`, the changing routes acting on it, and the bodies they were sent. */
function userRoutes(list: UserRow[], bodies: unknown[] = []): FakeApiData["routes"] {
  return {
    "GET /users": () => [200, { items: list, next: null }],
    "POST /users": (r) => {
      bodies.push(r.body);
      return [201, { id: 9, email: (r.body as { email: string }).email }];
    },
    "POST /users/:email/suspend": (r) => {
      bodies.push(r.body);
      const u = list.find((u) => u.email === r.params.email)!;
      u.suspendedAt = "2026-12-07T09:00:00Z";
      return [200, { email: u.email, suspendedAt: u.suspendedAt, appsStopped: [], appsNotStopped: [], output: [] }];
    },
    "DELETE /users/:email": (r) => {
      const i = list.findIndex((u) => u.email === r.params.email);
      list.splice(i, 1);
      return [200, { email: r.params.email, deleted: true }];
    },
  };
}

const row = (frame: string, email: string) => frame.split("\n").find((l) => l.includes(email)) ?? "";

test("the users table shows each user's state, MFA, admin and creation date within 80 columns", async (t) => {
  const { frame } = await openDashboard(t, { start: "users", routes: userRoutes(users()) });
  const f = await frame((f) => f.includes("eve@example.com") && f.includes("n new"));
  assertFits(f);
  assert.match(f, /3 of 3 users, 1 suspended/);
  assert.match(row(f, "admin@example.com"), /admin@example\.com\s+Admin\s+active\s+on\s+yes\s+2026-01-02/);
  assert.match(row(f, "bob@example.com"), /bob@example\.com\s+Bob Build…\s+active\s+off\s+2026-03-04/);
  assert.match(row(f, "eve@example.com"), /eve@example\.com\s+–\s+suspended since 2026-11-30\s+off\s+2026-05-06/);
  assert.match(footer(f), /n new {2}S\/U suspend {2}D delete/);
});

test("`/` filters users by email, name or state", async (t) => {
  const { frame, press } = await openDashboard(t, { start: "users", routes: userRoutes(users()) });
  await frame((f) => f.includes("eve@example.com"));
  await press("/suspended");
  const f = await frame((f) => f.includes("1 of 3 users"));
  assert.match(f, /eve@example\.com/);
  assert.doesNotMatch(f, /bob@example\.com/);
});

test("`D` deletes only when the user's email is typed back, with ?confirm= repeating it", async (t) => {
  const list = users();
  const { frame, press, answer, changes } = await openDashboard(t, { start: "users", routes: userRoutes(list) });
  await frame((f) => f.includes("bob@example.com") && f.includes("n new"));
  await press("j"); // admin, bob, eve: the second row is bob
  await press("D");
  await frame((f) => f.includes("delete bob@example.com and everything only they own? (type bob@example.com to c"));
  await answer("eve@example.com");
  let f = await frame((f) => f.includes("not confirmed"));
  assert.match(f, /not confirmed: you typed "eve@example\.com", not bob@example\.com; nothing changed/);
  assert.deepEqual(changes(), []);
  await press("D");
  await frame((f) => f.includes("(type bob@example.com to c"));
  await answer("bob@example.com");
  f = await frame((f) => f.includes("deleted bob@example.com") && !f.includes("Bob Build"));
  assert.deepEqual(changes(), ["DELETE /api/v1/users/bob@example.com?confirm=bob@example.com"]);
  assert.match(f, /2 of 2 users/);
});

test("`S`, y and a reason suspend the user, and the refreshed row says since when", async (t) => {
  const bodies: unknown[] = [];
  const { frame, press, answer, changes } = await openDashboard(t, { start: "users", routes: userRoutes(users(), bodies) });
  await frame((f) => f.includes("bob@example.com") && f.includes("n new"));
  await press("j");
  await press("S");
  await frame((f) => f.includes("suspend bob@example.com? (type y to confirm"));
  await answer("y");
  await frame((f) => f.includes("reason (optional):"));
  await answer("chargeback");
  const f = await frame((f) => /bob@example\.com\s+Bob Build…\s+suspended since 2026-12-07/.test(f));
  assert.deepEqual(changes(), ["POST /api/v1/users/bob@example.com/suspend"]);
  assert.deepEqual(bodies, [{ reason: "chargeback" }]);
  assert.match(f, /suspended bob@example\.com/);
  assert.match(f, /3 of 3 users, 2 suspended/);
});

test("`n` creates a user in an organisation with the role given, member when none is typed", async (t) => {
  const bodies: unknown[] = [];
  const { frame, press, answer, changes } = await openDashboard(t, { start: "users", routes: userRoutes(users(), bodies) });
  await frame((f) => f.includes("bob@example.com") && f.includes("n new"));
  await press("n");
  await frame((f) => f.includes("new user's email:"));
  await answer("carol@example.com");
  await frame((f) => f.includes("organisation (empty for none):"));
  await answer("acme");
  await frame((f) => f.includes("role in acme"));
  await answer("");
  await frame((f) => f.includes("created carol@example.com, member of acme"));
  assert.deepEqual(changes(), ["POST /api/v1/users"]);
  assert.deepEqual(bodies, [{ email: "carol@example.com", org: "acme", role: "member" }]);
});

test("read-only, the footer shows no action keys and `S` does nothing", async (t) => {
  const { frame, press, changes, api } = await openDashboard(t, { start: "users", readonly: true, routes: userRoutes(users()) });
  await frame((f) => f.includes("bob@example.com") && f.includes("read-only"));
  // A platform admin is signed in: only read-only hides the keys.
  await frame(() => api.requests.includes("/api/v1/users/me"));
  await new Promise((r) => setTimeout(r, 100));
  let f = await frame(() => true);
  assert.match(footer(f), /Enter support$/);
  assert.doesNotMatch(footer(f), /suspend|delete|new/);
  await press("jS");
  await new Promise((r) => setTimeout(r, 100));
  f = await frame(() => true);
  assert.doesNotMatch(f, /suspend bob@example\.com\?/);
  assert.deepEqual(changes(), []);
  // `?` lists only the keys that work here.
  await press("?");
  f = await frame((f) => f.includes("the Support screen for the selected user"));
  assert.doesNotMatch(f, /suspend \(y, then a reason\)|delete the selected user/);
});

test("`?` lists the user actions to a platform admin", async (t) => {
  const { frame, press, api } = await openDashboard(t, { start: "users", routes: userRoutes(users()) });
  await frame((f) => f.includes("bob@example.com"));
  await frame(() => api.requests.includes("/api/v1/users/me"));
  await new Promise((r) => setTimeout(r, 100));
  await press("?");
  const f = await frame((f) => f.includes("the Support screen for the selected user"));
  assert.match(f, /^S \/ U +suspend \(y, then a reason\) \/ unsuspend the selected\n +user$/m, "a long line goes on under its text");
  assert.match(f, /^D +delete the selected user \(type their email\)$/m);
});

test("someone who is not a platform admin sees the refusal and no action keys", async (t) => {
  const member = { ...ADMIN_ME, email: "bob@example.com", isAdmin: false, scopes: ["read", "write"] };
  const { frame, press, changes, api } = await openDashboard(t, {
    start: "users", me: member,
    routes: { "GET /users": () => [403, { error: { code: "forbidden", message: "permission denied: only platform admins list users", requestId: "r" } }] },
  });
  await frame((f) => f.includes("not allowed"));
  // The footer follows who is signed in: wait until deck has said.
  await frame(() => api.requests.includes("/api/v1/users/me"));
  await new Promise((r) => setTimeout(r, 100));
  const f = await frame(() => true);
  assert.match(f, /^not allowed: permission denied: only platform admins list users$/m);
  assert.doesNotMatch(footer(f), /suspend|delete|new/);
  await press("n");
  await new Promise((r) => setTimeout(r, 100));
  assert.doesNotMatch(await frame(() => true), /new user's email/);
  assert.deepEqual(changes(), []);
});
