import { describeLine, formatDollars, formatQuantity, type AppUsageSummary, type InvoiceLine } from "../../core/index.ts";
import type { InvoiceStatus } from "../../core/billing/invoice-state.ts";
import type { Invoice } from "../../store/queries/index.ts";

/**
 * An invoice as a person reads it, in text ready to print: what the PDF and the web page both show, so
 * they never disagree. Renderers only lay it out.
 */
export interface InvoiceView {
  issuer: string;
  number: string;
  status: InvoiceStatus;
  /** "Open", "Paid on 3 Feb 2027", … */
  statusText: string;
  orgName: string;
  orgSlug: string;
  /** "1 Jan 2027 – 31 Jan 2027" (both days included). */
  periodText: string;
  /** The day it was issued (opened); null for a draft. */
  issuedText: string | null;
  rows: InvoiceRow[];
  subtotal: string;
  /** "-$5.00", or null when no credit was applied. */
  credits: string | null;
  total: string;
  /** What is still owed: the total while open (or written off), nothing once paid or void. */
  amountDue: string;
  apps: AppRow[];
  /** Where the org pays it (Stripe), when it is collected there. */
  payUrl: string | null;
}

export interface InvoiceRow {
  kind: InvoiceLine["kind"];
  description: string;
  quantity: string;
  amount: string;
}

export interface AppRow {
  app: string;
  buildMinutes: string;
  bandwidthGb: string;
  storageGbMonth: string;
  customDomains: string;
  amount: string;
}

export interface InvoiceViewOptions {
  /** The name the invoice is issued under (default "deck"). */
  issuer?: string;
  /** Apps listed one by one, most charged first; the rest are summed in one row (default 10). */
  topApps?: number;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "1 Feb 2027" (UTC). */
export function formatDay(iso: string): string {
  const d = new Date(iso);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
}

function describeStatus(invoice: Pick<Invoice, "status" | "paidAt" | "statusAt">): string {
  switch (invoice.status) {
    case "draft": return "Draft";
    case "open": return "Open";
    case "paid": return `Paid on ${formatDay(invoice.paidAt ?? invoice.statusAt)}`;
    case "void": return `Void since ${formatDay(invoice.statusAt)}`;
    case "uncollectible": return "Uncollectible";
  }
}

function describeQuantity(line: InvoiceLine): string {
  switch (line.kind) {
    case "fee":
    {
      if (line.seconds === line.periodSeconds) return "1 month";
      const days = (line.seconds / 86_400).toFixed(2).replace(/\.?0+$/, "");
      return `${days} day${days === "1" ? "" : "s"}`;
    }
    case "usage":
      // "1 domain-month", "2 domain-months"; the other units read the same either way.
      return `${formatQuantity(line.used)} ${line.used === "1" ? line.unit.replace(/s$/, "") : line.unit}`;
    case "credit":
      return "";
  }
}

/**
 * Usage lines of a meter the plan neither includes nor was used say nothing a reader needs; every other
 * line is printed, so allowances show even when nothing was used of them.
 */
function isWorthPrinting(line: InvoiceLine): boolean {
  return !(line.kind === "usage" && line.used === "0" && line.amountCents === 0 && line.allowance === "0");
}

/** Quantities in app rows: to two places, as a person compares them. */
function formatShort(decimal: string): string {
  const n = Number(decimal);
  return n === 0 ? "0" : formatQuantity(n.toFixed(2).replace(/\.?0+$/, "") || "0");
}

function toAppRows(apps: readonly AppUsageSummary[], top: number): AppRow[] {
  const used = apps.filter((a) => a.amountCents > 0 || Object.values(a.used).some((v) => v !== "0"));
  const sorted = [...used].sort((a, b) => b.amountCents - a.amountCents || (a.app ?? "\uffff").localeCompare(b.app ?? "\uffff"));
  const toRow = (app: string, u: AppUsageSummary["used"], cents: number): AppRow => ({
    app,
    buildMinutes: formatShort(u.build_minutes),
    bandwidthGb: formatShort(u.bandwidth_gb),
    storageGbMonth: formatShort(u.storage_gb_month),
    customDomains: formatShort(u.custom_domains),
    amount: formatDollars(cents),
  });
  const rows = sorted.slice(0, top).map((a) => toRow(a.app ?? "(the org as a whole)", a.used, a.amountCents));
  const rest = sorted.slice(top);
  if (rest.length) {
    const sum = (m: keyof AppUsageSummary["used"]) => String(rest.reduce((s, a) => s + Number(a.used[m]), 0));
    rows.push(toRow(`${rest.length} other app${rest.length === 1 ? "" : "s"}`,
      { build_minutes: sum("build_minutes"), bandwidth_gb: sum("bandwidth_gb"), storage_gb_month: sum("storage_gb_month"), custom_domains: sum("custom_domains") },
      rest.reduce((s, a) => s + a.amountCents, 0)));
  }
  return rows;
}

export function toInvoiceView(invoice: Invoice, options: InvoiceViewOptions = {}): InvoiceView {
  const { rated } = invoice;
  const lastDay = new Date(Date.parse(invoice.period.end) - 1).toISOString();
  const owed = invoice.status === "open" || invoice.status === "uncollectible" || invoice.status === "draft";
  return {
    issuer: options.issuer ?? "deck",
    number: invoice.number,
    status: invoice.status,
    statusText: describeStatus(invoice),
    orgName: invoice.orgName,
    orgSlug: invoice.orgSlug,
    periodText: `${formatDay(invoice.period.start)} – ${formatDay(lastDay)}`,
    issuedText: invoice.openedAt ? formatDay(invoice.openedAt) : null,
    rows: rated.lines.filter(isWorthPrinting).map((l) => ({ kind: l.kind, description: describeLine(l), quantity: describeQuantity(l), amount: formatDollars(l.amountCents) })),
    subtotal: formatDollars(invoice.subtotalCents),
    credits: invoice.creditCents > 0 ? formatDollars(-invoice.creditCents) : null,
    total: formatDollars(invoice.totalCents),
    amountDue: formatDollars(owed ? invoice.totalCents : 0),
    apps: toAppRows(rated.apps, options.topApps ?? 10),
    // Only a web address is offered as a link; anything else stored there is not shown.
    payUrl: owed && invoice.hostedUrl && /^https:\/\//i.test(invoice.hostedUrl) ? invoice.hostedUrl : null,
  };
}
