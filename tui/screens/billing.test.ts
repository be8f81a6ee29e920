import { test } from "node:test";
import assert from "node:assert/strict";
import type { FakeApiData } from "../fake-api.ts";
import { assertFits, openDashboard } from "./admin-harness.ts";
import type { BillingOverview } from "./billing.ts";

const GiB = 1024 ** 3;

function overview(): BillingOverview {
  return {
    period: { start: "2026-12-01T00:00:00Z", end: "2027-01-01T00:00:00Z" }, currency: "usd",
    revenueCents: 1_234_56, mrrCents: 98_765_43,
    subscriptions: [
      { plan: "free", orgs: 120, mrrCents: 0 },
      { plan: "team", orgs: 40, mrrCents: 1_960_00 },
      { plan: "enterprise", orgs: 2, mrrCents: 96_805_43 },
    ],
    overdue: [
      { org: "acme", number: "DECK-2026-000042", totalCents: 4_900_00, status: "open", dueAt: "2026-11-20T00:00:00Z", daysOverdue: 17 },
      { org: "globex", number: "DECK-2026-000051", totalCents: 49_00, status: "open", dueAt: "2026-12-06T00:00:00Z", daysOverdue: 1 },
    ],
    topUsage: Array.from({ length: 10 }, (_, i) => ({
      org: `org-${String(i + 1).padStart(2, "0")}`, plan: "team", buildMinutes: 5000 - i * 100, bandwidthBytes: (50 - i) * GiB, storageGbMonths: 10, estimateCents: 10_000_00 - i * 50_00,
    })),
  };
}

function routes(): FakeApiData["routes"] {
  return {
    "GET /billing/overview": () => [200, overview()],
    "GET /orgs/:org/members": () => [200, { items: [{ email: "owner@globex.test", role: "owner", joinedAt: "2026-01-01T00:00:00Z" }] }],
    "GET /orgs/:org/billing/plan": (r) => [200, { org: r.params.org, plan: { code: "team", name: "Team", monthlyCents: 4900, custom: false }, since: "2026-01-01T00:00:00Z", scheduled: null, history: [] }],
  };
}

test("billing shows revenue, MRR in dollars, subscriptions with bars, overdue invoices and top usage within 80 columns", async (t) => {
  const { frame } = await openDashboard(t, { start: "billing", routes: routes() });
  const f = await frame((f) => f.includes("MRR"));
  assertFits(f);
  assert.match(f, /revenue this month \$1,234\.56 {3}MRR \$98,765\.43/);
  assert.match(f, /free\s+120 orgs\s+\$0\.00\s+·{16}/);
  assert.match(f, /enterprise\s+2 orgs\s+\$96,805\.43\s+█{16}/);
  assert.match(f, /overdue invoices \(2\)/);
  assert.match(f, /> acme\s+DECK-2026-000042\s+\$4,900\.00\s+17 days\s+2026-11-20/);
  assert.match(f, /globex\s+DECK-2026-000051\s+\$49\.00\s+1 day\s+2026-12-06/);
  assert.match(f, /org-01\s+team\s+5,000\s+50\.0 GiB\s+\$10,000\.00/);
});

test("the selection moves through invoices and usage rows, scrolling the screen; Enter opens the organisation", async (t) => {
  const { frame, press } = await openDashboard(t, { start: "billing", routes: routes() });
  await frame((f) => f.includes("MRR"));
  // Two invoices and ten usage rows do not fit in 20 rows: the last one scrolls into view.
  assert.doesNotMatch(await frame(() => true), /org-10/);
  await press("jjjjjjjjjjjj");
  let f = await frame((f) => /> org-10\s+team/.test(f));
  assertFits(f);
  await press("kkkkkkkkkk");
  f = await frame((f) => /> globex/.test(f));
  await press("\r");
  f = await frame((f) => f.includes("owner@globex.test"));
  assert.match(f.split("\n")[0]!, /· organisation globex/);
});

test("someone who is not a platform admin sees why there is no billing", async (t) => {
  const { frame } = await openDashboard(t, {
    start: "billing",
    routes: { "GET /billing/overview": () => [403, { error: { code: "forbidden", message: "permission denied: only platform admins see the billing overview", requestId: "r" } }] },
  });
  await frame((f) => /^not allowed: permission denied: only platform admins see the billing overview$/m.test(f));
});
