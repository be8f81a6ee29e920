import { test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiData } from "../fake-api.ts";
import { ADMIN_ME, assertFits, footer, openDashboard } from "./admin-harness.ts";
import type { MemberRow, OrgPlan, OrgRow } from "./orgs.ts";

function orgs(): OrgRow[] {
  return [
    { slug: "acme", name: "Acme Corporation", plan: "team", members: 3, apps: 12, createdAt: "2026-02-01T00:00:00Z" },
    { slug: "default", name: "Default", plan: "free", members: 1, apps: 0, createdAt: "2026-01-01T00:00:00Z" },
  ];
}

function acmePlan(): OrgPlan & { history: unknown[] } {
  return {
    org: "acme", plan: { code: "team", name: "Team", monthlyCents: 4900, custom: false }, since: "2026-02-01T00:00:00Z",
    scheduled: { plan: "starter", from: "2027-01-01T00:00:00Z" }, history: [],
  };
}

/** The orgs routes over `members`, recording the bodies of the changing calls. */
function orgRoutes(members: MemberRow[], bodies: unknown[] = []): FakeApiData["routes"] {
  return {
    "GET /orgs": (r) => [200, { items: r.query.get("all") === "true" ? orgs() : orgs().slice(0, 1).map(({ members: _m, apps: _a, ...o }) => ({ ...o, role: "member" })) }],
    "GET /orgs/:org/members": () => [200, { items: members }],
    "GET /orgs/:org/billing/plan": () => [200, acmePlan()],
    "PUT /orgs/:org/members": (r) => {
      bodies.push(r.body);
      const { email, role } = r.body as MemberRow;
      const m = members.find((m) => m.email === email);
      if (m) m.role = role;
      else members.push({ email, role, joinedAt: "2026-12-07T00:00:00Z" });
      return [200, { items: members }];
    },
    "DELETE /orgs/:org/members/:email": (r) => {
      members.splice(members.findIndex((m) => m.email === r.params.email), 1);
      return [204, null];
    },
    "PUT /orgs/:org/billing/plan": (r) => {
      bodies.push(r.body);
      return [200, { ...acmePlan(), plan: { code: "business", name: "Business", monthlyCents: 19900, custom: false }, scheduled: null, changed: true }];
    },
  };
}

function members(): MemberRow[] {
  return [
    { email: "owner@acme.test", role: "owner", joinedAt: "2026-02-01T00:00:00Z" },
    { email: "dev@acme.test", role: "member", joinedAt: "2026-03-01T00:00:00Z" },
  ];
}

test("a platform admin sees every organisation with plan, members and apps within 80 columns", async (t) => {
  const { frame, api } = await openDashboard(t, { start: "orgs", routes: orgRoutes(members()) });
  const f = await frame((f) => f.includes("acme") && f.includes("2 of 2 organisations"));
  assertFits(f);
  assert.match(f, /acme\s+Acme Corporation\s+team\s+3\s+12\s+2026-02-01/);
  assert.match(f, /default\s+Default\s+free\s+1\s+0\s+2026-01-01/);
  assert.ok(api.requests.includes("/api/v1/orgs?all=true"), api.requests.join("\n"));
});

test("Enter opens an organisation with its members and plan; `r` changes the selected member's role", async (t) => {
  const bodies: unknown[] = [];
  const { frame, press, answer, changes } = await openDashboard(t, { start: "orgs", routes: orgRoutes(members(), bodies) });
  await frame((f) => f.includes("Acme Corporation"));
  await press("\r");
  let f = await frame((f) => f.includes("dev@acme.test") && f.includes("r role"));
  assertFits(f);
  assert.match(f.split("\n")[0]!, /· organisation acme/);
  assert.match(f, /plan Team \(team\), \$49\.00\/month, since 2026-02-01/);
  assert.match(f, /changes to starter on 2027-01-01/);
  assert.match(f, /owner@acme\.test\s+owner\s+2026-02-01/);
  await press("jr");
  await frame((f) => f.includes("role for dev@acme.test (owner/admin/member/viewer):"));
  await answer("admin");
  f = await frame((f) => /dev@acme\.test\s+admin\s+2026-03-01/.test(f) && f.includes("is now admin"));
  assert.match(f, /dev@acme\.test is now admin of acme/);
  assert.deepEqual(changes(), ["PUT /api/v1/orgs/acme/members"]);
  assert.deepEqual(bodies, [{ email: "dev@acme.test", role: "admin" }]);
});

test("`x` removes a member only when their email is typed back; `p` changes the plan", async (t) => {
  const bodies: unknown[] = [];
  const { frame, press, answer, changes } = await openDashboard(t, { start: "orgs", routes: orgRoutes(members(), bodies) });
  await frame((f) => f.includes("Acme Corporation"));
  await press("\r");
  await frame((f) => f.includes("dev@acme.test") && f.includes("x remove"));
  await press("jx");
  await frame((f) => f.includes("remove dev@acme.test from acme?"));
  await answer("y");
  await frame((f) => f.includes("not confirmed"));
  assert.deepEqual(changes(), []);
  await press("x");
  await frame((f) => f.includes("remove dev@acme.test from acme?"));
  await answer("dev@acme.test");
  let f = await frame((f) => f.includes("dev@acme.test is no longer a member of acme") && !f.includes("dev@acme.test  "));
  assert.match(f, /members \(1\)/);
  await press("p");
  await frame((f) => f.includes("new plan for acme"));
  await answer("business");
  f = await frame((f) => f.includes("acme is now on Business"));
  assert.deepEqual(changes(), ["DELETE /api/v1/orgs/acme/members/dev@acme.test", "PUT /api/v1/orgs/acme/billing/plan"]);
  assert.deepEqual(bodies, [{ plan: "business" }]);
});

test("a member of the organisation sees their own organisations and no keys that change it", async (t) => {
  const member = { ...ADMIN_ME, email: "dev@acme.test", isAdmin: false, organizations: [{ slug: "acme", role: "member" }] };
  const { frame, press, changes, api } = await openDashboard(t, { start: "orgs", me: member, routes: orgRoutes(members()) });
  let f = await frame((f) => f.includes("1 of 1 organisations (yours)"));
  assert.match(f, /acme\s+Acme Corporation\s+team\s+–\s+–/);
  assert.ok(api.requests.includes("/api/v1/orgs"), api.requests.join("\n"));
  assert.ok(!api.requests.includes("/api/v1/orgs?all=true"));
  await press("\r");
  f = await frame((f) => f.includes("dev@acme.test") && f.includes("you are member here"));
  assert.doesNotMatch(footer(f), /role|remove|plan/);
  await press("jr");
  await new Promise((r) => setTimeout(r, 100));
  assert.doesNotMatch(await frame(() => true), /role for dev@acme\.test/);
  assert.deepEqual(changes(), []);
});
