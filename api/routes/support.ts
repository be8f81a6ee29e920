/** Support and business views for platform admins: one user, every org, the billing overview. */
import { z } from "zod/v4";
import { billingOverview, supportUser } from "../../ops/support.ts";
import { defineRoute } from "../registry.ts";
import { email } from "../schemas.ts";

const recentError = z.object({ at: z.string(), app: z.string().nullable(), kind: z.enum(["deploy", "denied", "sign-in"]), message: z.string() });

// After GET /users/me (api/routes/accounts.ts, registered first): "me" is not an email either way.
defineRoute({
  method: "get", path: "/users/:email", scope: "admin", tag: "users",
  summary: "One user for support: their organisations, apps, keys and tokens, last sign-in, and what went wrong for them in the last 7 days (platform admins)",
  params: z.object({ email }).strict(),
  response: z.object({
    email: z.string(), name: z.string().nullable(), isAdmin: z.boolean(), createdAt: z.string(),
    suspendedAt: z.string().nullable(), suspendReason: z.string().nullable(), mfaEnabled: z.boolean(), lastSignInAt: z.string().nullable(),
    orgs: z.array(z.object({ slug: z.string(), role: z.string() })),
    apps: z.array(z.object({ name: z.string(), org: z.string(), status: z.string() })),
    keys: z.number(), tokens: z.number(),
    recentErrors: z.array(recentError),
  }),
  handler: async ({ deps, caller, params }) => supportUser(deps, caller, params.email),
});

defineRoute({
  method: "get", path: "/billing/overview", scope: "admin", tag: "billing",
  summary: "Revenue this month, recurring revenue by plan, overdue invoices and this month's heaviest users (platform admins)",
  response: z.object({
    period: z.object({ start: z.string(), end: z.string() }),
    currency: z.literal("usd"),
    revenueCents: z.number(),
    mrrCents: z.number(),
    subscriptions: z.array(z.object({ plan: z.string(), orgs: z.number(), mrrCents: z.number() })),
    overdue: z.array(z.object({ org: z.string(), number: z.string(), totalCents: z.number(), status: z.string(), dueAt: z.string().nullable(), daysOverdue: z.number() })),
    topUsage: z.array(z.object({
      org: z.string(), plan: z.string(), buildMinutes: z.number(), bandwidthBytes: z.number(), storageGbMonths: z.number(), estimateCents: z.number(),
    })),
  }),
  handler: async ({ deps, caller }) => billingOverview(deps, caller),
});
