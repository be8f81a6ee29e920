import { parsePeriod, rateInvoice, startingPlan, type Period, type RatedInvoice } from "../../core/index.ts";
import { nextInvoiceStatus } from "../../core/billing/invoice-state.ts";
import {
  findInvoice, findInvoiceOfPeriod, findOrgToInvoice, insertDraftInvoice, ledgerEntriesForRating, loadCatalogue, lockOrgInvoices, openCreditsOf, planHistoryOf,
  updateInvoiceStatus, type Db, type Invoice,
} from "../../store/queries/index.ts";

export interface ClosePeriodOptions {
  orgId: number;
  /** The billing month (core `toMonthlyPeriod`). */
  period: Period;
  /** When the invoice is issued; the period must have ended by then. */
  now: Date;
}

export type ClosePeriodResult =
  /** The invoice was written and opened now. */
  | { outcome: "opened"; invoice: Invoice }
  /** The org had a (non-void) invoice for the period already; nothing was written. */
  | { outcome: "existing"; invoice: Invoice }
  | { outcome: "nothing_to_bill" | "period_not_ended" | "org_not_found"; reason: string };

/**
 * Whether a rated period is worth an invoice: any usage at all, or any time on a plan with a fee, gets
 * one, even if allowances and credits bring it to $0.00 (the org sees what it used and what its credit
 * covered). An org that used nothing and had no fee all period gets none: a free org left idle is not
 * sent a stream of empty invoices.
 */
export function hasSomethingToBill(rated: RatedInvoice): boolean {
  return rated.lines.some((l) => (l.kind === "fee" && l.monthlyCents > 0) || (l.kind === "usage" && l.ledgerQuantity !== "0"));
}

/**
 * Closes one org's billing period: rates its plan history, ledger and open credits for the period and,
 * in one transaction, writes the invoice as a draft with its lines, takes the credits it used and opens
 * it. Closing a period that already has an invoice returns that invoice; a voided one is replaced by a
 * new invoice with a new number. Ledger entries that arrive after the close are not billed, which is why
 * the invoice job waits a grace period after the month ends.
 */
export async function closePeriod(db: Db, o: ClosePeriodOptions): Promise<ClosePeriodResult> {
  const { startMs, endMs } = parsePeriod(o.period);
  const period: Period = { start: new Date(startMs).toISOString(), end: new Date(endMs).toISOString() };
  if (o.now.getTime() < endMs) return { outcome: "period_not_ended", reason: `the period ${period.start} to ${period.end} has not ended yet` };
  return db.transaction(async (tx) => {
    // Under the org's lock, so a second close of the same period, or a close of another period at the
    // same time, sees this invoice and the credits it took.
    await lockOrgInvoices(tx, o.orgId);
    const existing = await findInvoiceOfPeriod(tx, o.orgId, period.start);
    if (existing) return { outcome: "existing", invoice: existing };
    const org = await findOrgToInvoice(tx, o.orgId);
    if (!org) return { outcome: "org_not_found", reason: `org ${o.orgId} does not exist` };
    const catalogue = await loadCatalogue(tx);
    const planHistory = await planHistoryOf(tx, o.orgId, startingPlan(catalogue).code);
    if (!planHistory.some((c) => Date.parse(c.from) < endMs)) return { outcome: "nothing_to_bill", reason: `${org.slug} did not exist yet in the period` };
    const rated = rateInvoice({
      orgId: o.orgId, catalogue, planHistory, period,
      entries: await ledgerEntriesForRating(tx, o.orgId, period.start, period.end),
      credits: (await openCreditsOf(tx, o.orgId)).map((c) => ({ id: c.id, cents: c.cents, reason: c.reason })),
      trace: "count",
    });
    if (!hasSomethingToBill(rated)) return { outcome: "nothing_to_bill", reason: `${org.slug} had no usage and no plan fee in the period` };
    const draft = await insertDraftInvoice(tx, { orgId: org.id, orgSlug: org.slug, orgName: org.name, rated, now: o.now });
    const move = nextInvoiceStatus(draft.status, "open");
    if (!move.ok) throw new Error(`invoice ${draft.number}: ${move.reason}`);
    if (!(await updateInvoiceStatus(tx, { id: draft.id, from: draft.status, to: move.status, at: o.now }))) {
      throw new Error(`invoice ${draft.number} changed status while it was being opened`);
    }
    const opened = await findInvoice(tx, { number: draft.number });
    if (!opened) throw new Error(`invoice ${draft.number} vanished while it was being opened`);
    return { outcome: "opened", invoice: opened };
  });
}
