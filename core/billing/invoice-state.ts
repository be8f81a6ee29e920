/**
 * Where an invoice stands, and every move between states in one function. An invoice is written as a
 * draft, opened when its period closes (it is then due), and ends paid, void (cancelled; it keeps its
 * number) or uncollectible (written off). A written-off invoice that is paid after all becomes paid.
 *
 *   draft ──open──▶ open ──pay──▶ paid
 *     │               │  ╲
 *     └──void──▶ void ◀┘   uncollectible ──pay──▶ paid
 */

export const INVOICE_STATUSES = ["draft", "open", "paid", "void", "uncollectible"] as const;
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number];

export const INVOICE_ACTIONS = ["open", "pay", "void", "uncollectible"] as const;
export type InvoiceAction = (typeof INVOICE_ACTIONS)[number];

/** The status an action leads to, or why it is refused (one line, for `billing:invoice` and the API). */
export type InvoiceTransition =
  | { ok: true; status: InvoiceStatus }
  | { ok: false; code: "invoice_transition_refused"; from: InvoiceStatus; action: InvoiceAction; reason: string };

/** From each status: the actions it allows and where they lead. */
const MOVES: Readonly<Record<InvoiceStatus, Partial<Record<InvoiceAction, InvoiceStatus>>>> = {
  draft: { open: "open", void: "void" },
  open: { pay: "paid", void: "void", uncollectible: "uncollectible" },
  uncollectible: { pay: "paid" },
  paid: {},
  void: {},
};

/** Why an action does not apply, per status; the first matching entry wins. */
function explainRefusal(from: InvoiceStatus, action: InvoiceAction): string {
  if (from === "void") return "the invoice is void: it stays as it is (its number is never reused)";
  if (from === "paid") {
    if (action === "pay") return "the invoice is already paid";
    return `a paid invoice cannot be marked ${action === "open" ? "open" : action}; grant a credit to give money back`;
  }
  if (from === "draft") return `a draft invoice is opened before it can be marked ${action === "pay" ? "paid" : action}`;
  if (from === "open" && action === "open") return "the invoice is already open";
  if (from === "uncollectible") {
    if (action === "uncollectible") return "the invoice is already marked uncollectible";
    if (action === "void") return "an uncollectible invoice cannot be voided; it can still be marked paid";
    return "an uncollectible invoice cannot be opened again; it can still be marked paid";
  }
  return `an ${from} invoice cannot be marked ${action}`;
}

/** The status `action` moves an invoice in status `from` to, or a refusal saying why not. */
export function nextInvoiceStatus(from: InvoiceStatus, action: InvoiceAction): InvoiceTransition {
  const to = MOVES[from][action];
  if (to !== undefined) return { ok: true, status: to };
  return { ok: false, code: "invoice_transition_refused", from, action, reason: explainRefusal(from, action) };
}

export function isInvoiceStatus(value: string): value is InvoiceStatus {
  return (INVOICE_STATUSES as readonly string[]).includes(value);
}

export function isInvoiceAction(value: string): value is InvoiceAction {
  return (INVOICE_ACTIONS as readonly string[]).includes(value);
}
