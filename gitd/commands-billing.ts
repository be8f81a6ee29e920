import { DeckError, describeLine, formatDollars } from "../core/index.ts";
import {
  billingAdvice, billingCatalogue, billingInvoice, billingPaymentPage, setBillingCatalogue, billingInvoicePdf, closeBillingMonth, billingInvoices, billingPlans, billingUsage, describePlan, explainInvoiceLine, markInvoice, orgPlan, setBillingCap, setOrgPlan,
  type PlanView,
} from "../ops/billing.ts";
import { defineCommands, pad, positionals } from "./command-kit.ts";

/** SSH commands for billing: plans, an org's plan (ops/billing.ts). */

const allowance = (p: PlanView, meter: string) => {
  const m = p.meters.find((x) => x.meter === meter)!;
  return m.included === null ? "unlimited" : `${m.included.toLocaleString("en-US")} ${m.unit}`;
};

defineCommands({
  "billing:plans": {
    usage: "billing:plans [--json]", help: "the plans: monthly fee, what each includes, and the price of usage beyond it", bools: ["--json"],
    run: async (deps, _caller, args, io) => {
      positionals(args, [], "billing:plans [--json]");
      const plans = await billingPlans(deps);
      if (args.json) return io.out(JSON.stringify(plans));
      const rows = plans.map((p) => [p.code, p.name, p.custom && p.monthlyCents === 0 ? "custom" : `${formatDollars(p.monthlyCents)}/mo`, allowance(p, "build_minutes"), allowance(p, "bandwidth_gb")]);
      for (const l of pad([["PLAN", "NAME", "FEE", "BUILD MINUTES", "BANDWIDTH"], ...rows])) io.out(l);
      const singular = (unit: string) => unit.replace(/s$/, "");
      io.out(`beyond a plan: ${plans[0]!.meters.map((m) => `${m.label.toLowerCase()} ${formatDollars(m.unitCents)}/${singular(m.unit)}`).join(", ")}`);
    },
  },
  "billing:plan": {
    usage: "billing:plan ORG [PLAN [TERMS]] [--json]",
    help: "an organisation's plan; with PLAN, move it to that plan from now (owners; the month's invoice prorates both to the second); Enterprise terms as JSON (platform admins)",
    bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const usage = "billing:plan ORG [PLAN [TERMS]] [--json]";
      const [org, code, ...terms] = args.positional;
      if (!org) throw new DeckError("bad_argument", `missing ORG; usage: ${usage}`);
      if (code === undefined) {
        const v = await orgPlan(deps, caller, org);
        if (args.json) return io.out(JSON.stringify(v));
        io.out(`${v.org}: ${v.plan.name} since ${v.since.slice(0, 10)} — ${describePlan(v.plan)}`);
        if (v.scheduled) io.out(`moves to ${v.scheduled.plan} on ${v.scheduled.from.slice(0, 10)}`);
        return;
      }
      const v = await setOrgPlan(deps, caller, org, code, terms.length ? terms.join(" ") : undefined);
      if (args.json) return io.out(JSON.stringify(v));
      if (!v.changed) return io.out(`${v.org} is already on ${v.plan.name}`);
      if (v.scheduled) return io.out(`${v.org} moves to ${v.scheduled.plan} when the month ends (${v.scheduled.from.slice(0, 10)}); until then it stays on ${v.plan.name}`);
      io.out(v.kept ? `${v.org} stays on ${v.plan.name}` : `${v.org} is on ${v.plan.name} from now — ${describePlan(v.plan)}`);
    },
  },
  "billing:usage": {
    usage: "billing:usage ORG [--json]", help: "this month's cost so far and a forecast to its end, per meter and per app, live from the ledger (owners and admins)", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "billing:usage ORG [--json]");
      const u = await billingUsage(deps, caller, org!);
      if (args.json) return io.out(JSON.stringify(u));
      io.out(`${u.org} on ${u.plan}, ${u.period.start.slice(0, 10)} to ${u.period.end.slice(0, 10)} (now ${u.now.slice(0, 16).replace("T", " ")} UTC)`);
      io.out(`so far ${formatDollars(u.soFarCents)}; forecast for the month ${formatDollars(u.forecastCents)}${u.spendCapCents !== null ? `; spend cap ${formatDollars(u.spendCapCents)}` : ""}`);
      const rows = u.meters.map((m) => [m.label, `${m.used} ${m.unit}`, m.included === null ? "unlimited" : `${m.included} ${m.unit}`, formatDollars(m.soFarCents), `${m.forecastUsed} ${m.unit}`, formatDollars(m.forecastCents)]);
      for (const l of pad([["USAGE", "USED", "INCLUDED", "COST", "FORECAST", "FORECAST COST"], ...rows])) io.out(l);
      if (u.apps.length === 0) return;
      io.out("");
      for (const l of pad([["APP", "COST SO FAR", "FORECAST"], ...u.apps.map((a) => [a.app ?? "(organisation)", formatDollars(a.soFarCents), formatDollars(a.forecastCents)])])) io.out(l);
    },
  },
  "billing:cap": {
    usage: "billing:cap ORG [AMOUNT|off]", help: "the org's monthly spend cap in dollars: notices at 80% and 100%, and builds stop at 100% (owners)",
    run: async (deps, caller, args, io) => {
      const usage = "billing:cap ORG [AMOUNT|off]";
      const [org, amount] = positionals(args, args.positional.length > 1 ? ["ORG", "AMOUNT"] : ["ORG"], usage);
      if (amount === undefined) {
        const u = await billingUsage(deps, caller, org!);
        return io.out(u.spendCapCents === null ? `${u.org} has no spend cap (set one: ${usage})` : `${u.org}: spend cap ${formatDollars(u.spendCapCents)} a month; ${formatDollars(u.soFarCents)} so far`);
      }
      const r = await setBillingCap(deps, caller, org!, amount);
      io.out(r.spendCapCents === null ? `${r.org} has no spend cap now` : `${r.org}: spend cap ${formatDollars(r.spendCapCents)} a month; notices at 80% and 100%, builds stop at 100%`);
    },
  },
  "billing:invoices": {
    usage: "billing:invoices ORG [--json]", help: "the org's invoices, newest first: number, month, status and total (owners and admins)", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "billing:invoices ORG [--json]");
      const list = await billingInvoices(deps, caller, org!);
      if (args.json) return io.out(JSON.stringify(list));
      if (list.length === 0) return io.out(`${org} has no invoices yet (deck issues one for each month an hour after it ends)`);
      for (const l of pad([["NUMBER", "MONTH", "STATUS", "TOTAL"], ...list.map((i) => [i.number, i.period.start.slice(0, 7), i.status, formatDollars(i.totalCents)])])) io.out(l);
    },
  },
  "billing:invoice": {
    usage: "billing:invoice ORG NUMBER [--pdf|--html|--json]",
    help: "one invoice, its lines numbered (billing:explain traces one to the ledger); --pdf writes the PDF to standard output (> invoice.pdf), --html a web page",
    bools: ["--pdf", "--html", "--json"],
    run: async (deps, caller, args, io) => {
      const usage = "billing:invoice ORG NUMBER [--pdf|--html|--json]";
      const [org, number] = positionals(args, ["ORG", "NUMBER"], usage);
      if (args.flags.has("--pdf")) {
        if (io.tty) throw new DeckError("bad_argument", `a PDF is not for a terminal: send it to a file, ssh … ${usage.replace(" [--pdf|--html|--json]", " --pdf")} > invoice.pdf (without -t)`);
        if (!io.write) throw new DeckError("bad_argument", "this connection cannot carry a file; use GET /api/v1/orgs/ORG/billing/invoices/NUMBER.pdf");
        return io.write(await billingInvoicePdf(deps, caller, org!, number!));
      }
      const { invoice, view } = await billingInvoice(deps, caller, org!, number!);
      if (args.flags.has("--html")) {
        const { renderInvoiceHtml } = await import("../billing/invoices/index.ts");
        return io.out(renderInvoiceHtml(invoice));
      }
      if (args.json) return io.out(JSON.stringify({ ...invoice, view }));
      io.out(`${view.number} — ${view.orgName} (${view.orgSlug}), ${view.periodText}: ${view.statusText}`);
      // Meters with nothing used and nothing to pay are left out (--json has every line); numbers stay those of the whole invoice.
      const shown = invoice.rated.lines.map((l, i) => ({ l, n: i + 1 })).filter(({ l }) => !(l.kind === "usage" && Number(l.used) === 0 && l.amountCents === 0));
      const rows = shown.map(({ l, n }) => [String(n), describeLine(l), formatDollars(l.amountCents)]);
      for (const l of pad([["LINE", "DESCRIPTION", "AMOUNT"], ...rows])) io.out(l);
      io.out(`subtotal ${view.subtotal}${view.credits ? `; credits ${view.credits}` : ""}; total ${view.total}; due ${view.amountDue}`);
    },
  },
  "billing:explain": {
    usage: "billing:explain ORG NUMBER LINE [--json]", help: "the ledger entries one line of an invoice came from (LINE as billing:invoice numbers them)", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const usage = "billing:explain ORG NUMBER LINE [--json]";
      const [org, number, line] = positionals(args, ["ORG", "NUMBER", "LINE"], usage);
      if (!/^\d{1,4}$/.test(line!)) throw new DeckError("bad_argument", `LINE is a line number from billing:invoice; usage: ${usage}`);
      const e = await explainInvoiceLine(deps, caller, org!, number!, Number(line));
      if (args.json) return io.out(JSON.stringify(e));
      io.out(`${e.invoice} line ${e.line}: ${e.description} = ${formatDollars(e.amountCents)}`);
      if (e.total === 0) return io.out("no ledger entries behind this line (a fee or a credit)");
      io.out(`from ${e.total} ledger entr${e.total === 1 ? "y" : "ies"}${e.total > e.entries.length ? ` (the first ${e.entries.length} shown; --json for them)` : ""}:`);
      for (const l of pad([["AT (UTC)", "APP", "QUANTITY", "KEY"], ...e.entries.map((x) => [x.at.slice(0, 19).replace("T", " "), x.app ?? "-", `${x.quantity} ${x.meter.replace(/_/g, " ")}`, x.key])])) io.out(l);
    },
  },
  "billing:mark": {
    usage: "billing:mark ORG NUMBER paid|void|uncollectible", help: "record what became of an invoice (platform admins; with Stripe, its webhooks do this)",
    run: async (deps, caller, args, io) => {
      const [org, number, action] = positionals(args, ["ORG", "NUMBER", "STATUS"], "billing:mark ORG NUMBER paid|void|uncollectible");
      const verb = action === "paid" ? "pay" : action!;
      const i = await markInvoice(deps, caller, org!, number!, verb);
      io.out(`${i.number} is ${i.status}`);
    },
  },
  "billing:close": {
    usage: "billing:close ORG MONTH", help: "close a month (2027-01) into the org's invoice now (platform admins): a month the invoice job passed over, or to replace a voided invoice",
    run: async (deps, caller, args, io) => {
      const [org, month] = positionals(args, ["ORG", "MONTH"], "billing:close ORG MONTH");
      const r = await closeBillingMonth(deps, caller, org!, month!);
      io.out(`${r.invoice.number} ${r.opened ? "issued" : "was already issued"} for ${r.invoice.orgSlug}, ${month}: ${formatDollars(r.invoice.totalCents)} (${r.invoice.status})`);
    },
  },
  "billing:advice": {
    usage: "billing:advice ORG [--json]", help: "where the org pays for more than it uses: idle apps, scale above what traffic needs, a cheaper plan for the last 3 months", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "billing:advice ORG [--json]");
      const a = await billingAdvice(deps, caller, org!);
      if (args.json) return io.out(JSON.stringify(a));
      if (a.findings.length === 0) return io.out(`${a.org}: nothing to save: no idle apps, no scale above need, and its plan is the cheapest for its usage`);
      for (const f of a.findings) io.out(`- ${f.text}: ${f.command}`);
    },
  },
  "billing:pay": {
    usage: "billing:pay ORG [--portal]", help: "a Stripe page for the org's owners: save the card invoices are charged to, or (--portal) Stripe's billing portal with invoices and receipts",
    bools: ["--portal"],
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "billing:pay ORG [--portal]");
      const r = await billingPaymentPage(deps, caller, org!, args.flags.has("--portal") ? "portal" : "payment");
      io.out(`${r.org}: open ${r.url}`);
    },
  },
  "billing:catalogue": {
    usage: "billing:catalogue", help: "the plan catalogue in force as JSON: currency, prices beyond a plan (cents per unit), plans",
    run: async (deps, _caller, args, io) => {
      positionals(args, [], "billing:catalogue");
      io.out(JSON.stringify(await billingCatalogue(deps), null, 2));
    },
  },
  "billing:catalogue:set": {
    usage: "billing:catalogue:set < catalogue.json", help: "replace the plan catalogue (platform admins); every plan an org is on this month or last stays", stdin: true,
    run: async (deps, caller, args, io) => {
      positionals(args, [], "billing:catalogue:set < catalogue.json");
      const text = (io.stdin ? await io.stdin() : "").trim();
      if (!text) throw new DeckError("bad_argument", "send the catalogue as JSON on standard input: ssh deck@HOST billing:catalogue:set < catalogue.json (billing:catalogue shows the one in force)");
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new DeckError("bad_argument", "the catalogue is not JSON (billing:catalogue shows the one in force)");
      }
      const plans = await setBillingCatalogue(deps, caller, json);
      io.out(`the catalogue has ${plans.length} plan(s): ${plans.map((p) => p.code).join(", ")}`);
    },
  },
});
