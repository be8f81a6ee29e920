import { z } from "zod/v4";
import {
  billingAdvice, billingInvoice, billingInvoiceHtml, billingInvoicePdf, billingInvoices, billingPlans, billingUsage, explainInvoiceLine, markInvoice, orgPlan,
  setBillingCap, setBillingCatalogue, setOrgPlan,
} from "../../ops/billing.ts";
import { defineRoute } from "../registry.ts";
import { orgParams, orgSlug } from "../schemas.ts";

/** API routes for billing (ops/billing.ts). */

const planView = z.object({
  code: z.string(), name: z.string(), monthlyCents: z.number(), custom: z.boolean(),
  meters: z.array(z.object({
    meter: z.string(), unit: z.string(), label: z.string(),
    included: z.number().nullable().describe("billing units included a month; null: unlimited"), unitCents: z.number().describe("cents per unit beyond it"),
  })),
});
const orgPlanView = z.object({
  org: z.string(), plan: planView, since: z.string(),
  scheduled: z.object({ plan: z.string(), from: z.string() }).nullable().describe("a change not yet in force: a move to a plan with a lower fee takes effect when the month ends"),
  history: z.array(z.object({ plan: z.string(), from: z.string() })),
});

defineRoute({
  method: "get", path: "/billing/plans", scope: "read", tag: "billing", summary: "The plans: monthly fee, what each includes, and the price of usage beyond it",
  response: z.object({ items: z.array(planView) }),
  handler: async ({ deps }) => ({ items: await billingPlans(deps) }),
});

defineRoute({
  method: "put", path: "/billing/catalogue", scope: "admin", tag: "billing",
  summary: "Replace the plan catalogue (platform admins): { currency, prices, plans } as `billing:plans --json` reads them, every plan an organisation is on kept",
  body: z.object({}).passthrough(),
  response: z.object({ items: z.array(planView) }),
  handler: async ({ deps, caller, body }) => ({ items: await setBillingCatalogue(deps, caller, body) }),
});

defineRoute({
  method: "get", path: "/orgs/:org/billing/plan", scope: "read", tag: "billing", summary: "The organisation's plan now, a scheduled change and its plan history (owners and admins)",
  params: orgParams, response: orgPlanView,
  handler: async ({ deps, caller, params }) => orgPlan(deps, caller, params.org),
});

defineRoute({
  method: "put", path: "/orgs/:org/billing/plan", scope: "admin", tag: "billing",
  summary: "Move the organisation to another plan (owners): an upgrade at once (the month's invoice prorates both to the second), a lower fee when the month ends; Enterprise terms by platform admins",
  params: orgParams,
  body: z.object({
    plan: z.string().min(1).max(40),
    terms: z.object({}).passthrough().optional().describe("an Enterprise organisation's own fee and allowances: { monthlyCents, allowances, prices }"),
  }).strict(),
  response: orgPlanView.extend({ changed: z.boolean(), kept: z.boolean().optional().describe("the plan in force was chosen again: a scheduled change was cancelled") }),
  handler: async ({ deps, caller, params, body }) => setOrgPlan(deps, caller, params.org, body.plan, body.terms ? JSON.stringify(body.terms) : undefined),
});

const invoiceParams = z.object({ org: orgSlug, number: z.string().regex(/^[A-Z]{2,10}-\d{4}-\d{6,12}$/, "an invoice number like DECK-2027-000042") }).strict();

defineRoute({
  method: "get", path: "/orgs/:org/billing/usage", scope: "read", tag: "billing",
  summary: "This month's cost so far and a forecast to its end, per meter and per app, live from the ledger (owners and admins)",
  params: orgParams,
  handler: async ({ deps, caller, params }) => billingUsage(deps, caller, params.org),
});

defineRoute({
  method: "put", path: "/orgs/:org/billing/cap", scope: "admin", tag: "billing",
  summary: "Set the monthly spend cap in dollars (null: none): notices at 80% and 100%, builds stop at 100% (owners)",
  params: orgParams,
  body: z.object({ dollars: z.string().regex(/^\d{1,9}(\.\d{1,2})?$/, "dollars like 50 or 49.99").nullable() }).strict(),
  response: z.object({ org: z.string(), spendCapCents: z.number().nullable() }),
  handler: async ({ deps, caller, params, body }) => setBillingCap(deps, caller, params.org, body.dollars ?? "off"),
});

defineRoute({
  method: "get", path: "/orgs/:org/billing/invoices", scope: "read", tag: "billing", summary: "The organisation's invoices, newest first (owners and admins)",
  params: orgParams,
  handler: async ({ deps, caller, params }) => ({ items: await billingInvoices(deps, caller, params.org) }),
});

defineRoute({
  method: "get", path: "/orgs/:org/billing/invoices/:number", scope: "read", tag: "billing",
  summary: "One invoice with its rated lines; with Accept: application/pdf the PDF, with Accept: text/html the web page",
  params: invoiceParams, raw: true,
  handler: async ({ ctx, deps, caller, params }) => {
    const wants = ctx.accepts("application/json", "application/pdf", "text/html");
    if (wants === "application/pdf") {
      ctx.type = "application/pdf";
      ctx.set("content-disposition", `attachment; filename="${params.number}.pdf"`);
      ctx.body = await billingInvoicePdf(deps, caller, params.org, params.number);
    } else if (wants === "text/html") {
      ctx.type = "text/html; charset=utf-8";
      ctx.set("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'");
      ctx.body = await billingInvoiceHtml(deps, caller, params.org, params.number);
    } else {
      const { invoice, view } = await billingInvoice(deps, caller, params.org, params.number);
      ctx.body = { ...invoice, view };
    }
  },
});

defineRoute({
  method: "get", path: "/orgs/:org/billing/invoices/:number/lines/:line", scope: "read", tag: "billing",
  summary: "The ledger entries one line of an invoice came from (its 1-based position in the invoice's lines)",
  params: invoiceParams.extend({ line: z.coerce.number().int().min(1).max(9999) }).strict(),
  handler: async ({ deps, caller, params }) => explainInvoiceLine(deps, caller, params.org, params.number, params.line),
});

defineRoute({
  method: "post", path: "/orgs/:org/billing/invoices/:number/status", scope: "admin", tag: "billing",
  summary: "Record what became of an invoice: paid, void or uncollectible (platform admins; with Stripe, its webhooks do this)",
  params: invoiceParams, body: z.object({ status: z.enum(["paid", "void", "uncollectible"]) }).strict(),
  handler: async ({ deps, caller, params, body }) => markInvoice(deps, caller, params.org, params.number, body.status === "paid" ? "pay" : body.status),
});

defineRoute({
  method: "get", path: "/orgs/:org/billing/advice", scope: "read", tag: "billing",
  summary: "Where the organisation pays for more than it uses: idle apps (no requests in 7 days), scale above need, a cheaper plan for the last 3 months",
  params: orgParams,
  handler: async ({ deps, caller, params }) => billingAdvice(deps, caller, params.org),
});
