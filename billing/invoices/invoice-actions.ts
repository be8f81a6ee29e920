import { nextInvoiceStatus, type InvoiceAction } from "../../core/billing/invoice-state.ts";
import { findInvoice, updateInvoiceStatus, type Db, type Invoice } from "../../store/queries/index.ts";

export interface ChangeInvoiceStatusOptions {
  number: string;
  /** The org the invoice must belong to; left out by a platform admin, who may act on any invoice. */
  orgId?: number;
  action: InvoiceAction;
  now: Date;
}

export type ChangeInvoiceStatusResult =
  | { ok: true; invoice: Invoice }
  | { ok: false; code: "invoice_not_found" | "invoice_transition_refused" | "invoice_changed"; reason: string };

/**
 * Applies an action to an invoice (a platform admin marks it paid without Stripe; a Stripe event marks
 * it paid or uncollectible): refused, with the reason, when its status does not allow the action, and
 * reported as changed when another writer moved it between reading and writing, so the caller reads it
 * again rather than overwrite a newer status.
 */
export async function changeInvoiceStatus(db: Db, o: ChangeInvoiceStatusOptions): Promise<ChangeInvoiceStatusResult> {
  const invoice = await findInvoice(db, o.orgId === undefined ? { number: o.number } : { number: o.number, orgId: o.orgId });
  if (!invoice) return { ok: false, code: "invoice_not_found", reason: `no invoice ${o.number}` };
  const move = nextInvoiceStatus(invoice.status, o.action);
  if (!move.ok) return { ok: false, code: move.code, reason: `${invoice.number}: ${move.reason}` };
  if (!(await updateInvoiceStatus(db, { id: invoice.id, from: invoice.status, to: move.status, at: o.now }))) {
    return { ok: false, code: "invoice_changed", reason: `${invoice.number} changed status meanwhile; look at it again` };
  }
  const moved = await findInvoice(db, { number: invoice.number });
  if (!moved) return { ok: false, code: "invoice_not_found", reason: `no invoice ${o.number}` };
  return { ok: true, invoice: moved };
}
