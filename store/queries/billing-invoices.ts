/**
 * Invoices (billing/invoices): one per org and monthly period, with the rated lines as they were when
 * it opened, the credits it took, its status and, when Stripe collects it, the Stripe invoice it is
 * linked to. Moves between statuses are decided by core's `nextInvoiceStatus`; this file only stores
 * them, each as a compare-and-set on the status it was read in.
 */
import type { Period, RatedInvoice, UsageEntry } from "../../core/index.ts";
import { isInvoiceStatus, type InvoiceStatus } from "../../core/billing/invoice-state.ts";
import { q, toIso, type Db } from "./db.ts";

/** An invoice without its lines: what a listing shows. */
export interface InvoiceSummary {
  id: number;
  /** DECK-2027-000042 */
  number: string;
  /** null once the org is deleted: the invoice outlives it, with the slug and name it had. */
  orgId: number | null;
  orgSlug: string;
  orgName: string;
  period: Period;
  status: InvoiceStatus;
  currency: "usd";
  subtotalCents: number;
  creditCents: number;
  totalCents: number;
  stripeInvoiceId: string | null;
  hostedUrl: string | null;
  /** When the status last changed. */
  statusAt: string;
  /** When it opened (was issued); null while a draft. */
  openedAt: string | null;
  paidAt: string | null;
  createdAt: string;
}

/** An invoice with its rated lines (usage lines carry entry counts, not ledger ids). */
export interface Invoice extends InvoiceSummary {
  rated: RatedInvoice;
}

/**
 * `DECK-<year the period starts, UTC>-<sequence, at least 6 digits>`. The sequence runs across deck and
 * all years, so numbers sort in the order invoices were written.
 */
export function formatInvoiceNumber(periodStart: string, sequence: number): string {
  return `DECK-${new Date(periodStart).getUTCFullYear()}-${String(sequence).padStart(6, "0")}`;
}

const SUMMARY_COLUMNS = q`id, number, org_id, org_slug, org_name, period_start, period_end, status, currency, subtotal_cents, credit_cents,
  total_cents, stripe_invoice_id, hosted_url, status_at, opened_at, paid_at, created_at`;

function toSummary(r: Record<string, unknown>): InvoiceSummary {
  const status = String(r.status);
  if (!isInvoiceStatus(status)) throw new Error(`invoice ${String(r.number)} has status "${status}", which deck does not know`);
  return {
    id: Number(r.id),
    number: String(r.number),
    orgId: r.org_id == null ? null : Number(r.org_id),
    orgSlug: String(r.org_slug),
    orgName: String(r.org_name),
    period: { start: toIso(r.period_start), end: toIso(r.period_end) },
    status,
    currency: "usd",
    subtotalCents: Number(r.subtotal_cents),
    creditCents: Number(r.credit_cents),
    totalCents: Number(r.total_cents),
    stripeInvoiceId: r.stripe_invoice_id == null ? null : String(r.stripe_invoice_id),
    hostedUrl: r.hosted_url == null ? null : String(r.hosted_url),
    statusAt: toIso(r.status_at),
    openedAt: r.opened_at == null ? null : toIso(r.opened_at),
    paidAt: r.paid_at == null ? null : toIso(r.paid_at),
    createdAt: toIso(r.created_at),
  };
}

function toInvoice(r: Record<string, unknown>): Invoice {
  return { ...toSummary(r), rated: r.rated as RatedInvoice };
}

/**
 * The copy of a rated invoice kept with the invoice: usage lines keep how many ledger entries they
 * came from but not their ids (a busy org has millions); `billing:explain` traces them again.
 */
function toStoredCopy(rated: RatedInvoice): RatedInvoice {
  return { ...rated, lines: rated.lines.map((l) => (l.kind === "usage" && l.entryIds ? (({ entryIds: _ids, ...rest }) => rest)(l) : l)) };
}

export interface DraftInvoice {
  orgId: number;
  orgSlug: string;
  orgName: string;
  rated: RatedInvoice;
  now: Date;
}

/**
 * Writes `rated` as a draft invoice with the next number, and the credits its credit lines take, in one
 * transaction (a savepoint when `db` is one already). Numbers are never reused: a void invoice keeps
 * its number, and a number drawn by a transaction that then failed is skipped, not handed out again.
 * Throws a unique violation when the org has a non-void invoice for the period already.
 */
export async function insertDraftInvoice(db: Db, d: DraftInvoice): Promise<Invoice> {
  return db.transaction(async (tx) => {
    const sequence = Number(await tx.oneFirst(q`SELECT nextval('invoice_number_seq')`));
    const number = formatInvoiceNumber(d.rated.period.start, sequence);
    const now = d.now.toISOString();
    const row = await tx.one(q`
      INSERT INTO invoices (number, org_id, org_slug, org_name, period_start, period_end, status, subtotal_cents, credit_cents, total_cents, rated, status_at, created_at)
      VALUES (${number}, ${d.orgId}, ${d.orgSlug}, ${d.orgName}, ${d.rated.period.start}::timestamptz, ${d.rated.period.end}::timestamptz, 'draft',
              ${d.rated.subtotalCents}, ${d.rated.creditCents}, ${d.rated.totalCents}, ${JSON.stringify(toStoredCopy(d.rated))}::jsonb,
              ${now}::timestamptz, ${now}::timestamptz)
      RETURNING ${SUMMARY_COLUMNS}, rated`);
    const invoice = toInvoice(row);
    for (const line of d.rated.lines) {
      if (line.kind !== "credit" || line.amountCents >= 0) continue;
      await tx.query(q`INSERT INTO invoice_credits (invoice_id, credit_id, cents) VALUES (${invoice.id}, ${Number(line.creditId)}, ${-line.amountCents})`);
    }
    return invoice;
  });
}

/** The org's invoices, newest period first. */
export async function listInvoicesOfOrg(db: Db, orgId: number, options: { limit?: number } = {}): Promise<InvoiceSummary[]> {
  const rows = await db.any(q`SELECT ${SUMMARY_COLUMNS} FROM invoices WHERE org_id = ${orgId}
    ORDER BY period_start DESC, id DESC LIMIT ${options.limit ?? 120}`);
  return rows.map(toSummary);
}

/** The invoice with this number; with `orgId`, only when it is that org's (an org sees its own invoices alone). */
export async function findInvoice(db: Db, by: { number: string; orgId?: number }): Promise<Invoice | null> {
  const row = by.orgId === undefined
    ? await db.maybeOne(q`SELECT ${SUMMARY_COLUMNS}, rated FROM invoices WHERE number = ${by.number}`)
    : await db.maybeOne(q`SELECT ${SUMMARY_COLUMNS}, rated FROM invoices WHERE number = ${by.number} AND org_id = ${by.orgId}`);
  return row ? toInvoice(row) : null;
}

/** The org's invoice for the period that starts at `periodStart`, unless void (a void one may be replaced). */
export async function findInvoiceOfPeriod(db: Db, orgId: number, periodStart: string): Promise<Invoice | null> {
  const row = await db.maybeOne(q`SELECT ${SUMMARY_COLUMNS}, rated FROM invoices
    WHERE org_id = ${orgId} AND period_start = ${periodStart}::timestamptz AND status <> 'void'`);
  return row ? toInvoice(row) : null;
}

export async function findInvoiceByStripeId(db: Db, stripeInvoiceId: string): Promise<Invoice | null> {
  const row = await db.maybeOne(q`SELECT ${SUMMARY_COLUMNS}, rated FROM invoices WHERE stripe_invoice_id = ${stripeInvoiceId}`);
  return row ? toInvoice(row) : null;
}

/**
 * Moves the invoice from `from` to `to` (the caller checked the move with `nextInvoiceStatus`) unless its
 * status changed since it was read: false then, and nothing is written. Opening records when it was
 * issued; paying, when it was paid.
 */
export async function updateInvoiceStatus(db: Db, u: { id: number; from: InvoiceStatus; to: InvoiceStatus; at: Date }): Promise<boolean> {
  const at = u.at.toISOString();
  const row = await db.maybeOne(q`
    UPDATE invoices SET status = ${u.to}, status_at = ${at}::timestamptz,
      opened_at = CASE WHEN ${u.to} = 'open' THEN ${at}::timestamptz ELSE opened_at END,
      paid_at = CASE WHEN ${u.to} = 'paid' THEN ${at}::timestamptz ELSE paid_at END
    WHERE id = ${u.id} AND status = ${u.from}
    RETURNING id`);
  return row !== null;
}

/** Links the Stripe invoice that collects this one; false when the invoice does not exist. */
export async function linkStripeInvoice(db: Db, l: { id: number; stripeInvoiceId: string; hostedUrl: string | null }): Promise<boolean> {
  const row = await db.maybeOne(q`UPDATE invoices SET stripe_invoice_id = ${l.stripeInvoiceId}, hosted_url = ${l.hostedUrl}
    WHERE id = ${l.id} RETURNING id`);
  return row !== null;
}

/** The org's usage ledger over [from, to), as rating takes it. */
export async function ledgerEntriesForRating(db: Db, orgId: number, from: string, to: string): Promise<UsageEntry[]> {
  const rows = await db.any(q`SELECT key AS id, org_id, app, meter, quantity, at FROM usage_records
    WHERE org_id = ${orgId} AND at >= ${from}::timestamptz AND at < ${to}::timestamptz`);
  return rows.map((r) => ({
    id: String(r.id),
    orgId: Number(r.org_id),
    app: r.app == null ? null : String(r.app),
    meter: r.meter as UsageEntry["meter"],
    quantity: Number(r.quantity),
    at: new Date(String(r.at)).toISOString(),
  }));
}

/** An org to bill, with the name and slug its invoice keeps. */
export interface OrgToInvoice {
  id: number;
  slug: string;
  name: string;
}

export async function findOrgToInvoice(db: Db, orgId: number): Promise<OrgToInvoice | null> {
  const r = await db.maybeOne(q`SELECT id, slug, name FROM organizations WHERE id = ${orgId}`);
  return r ? { id: Number(r.id), slug: String(r.slug), name: String(r.name) } : null;
}

/**
 * Orgs that existed before the period ended and have no invoice for it in any status, by id after
 * `afterId`. A voided invoice counts: the period was invoiced and an admin cancelled it, so it is not
 * written again on its own.
 */
export async function listOrgsWithoutInvoice(db: Db, o: { period: Period; afterId: number; limit: number }): Promise<number[]> {
  const rows = await db.anyFirst(q`SELECT o.id FROM organizations o
    WHERE o.id > ${o.afterId} AND o.created_at < ${o.period.end}::timestamptz
      AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = o.id AND i.period_start = ${o.period.start}::timestamptz)
    ORDER BY o.id LIMIT ${o.limit}`);
  return rows.map(Number);
}

/** Arbitrary constants shared by every deck process: the keys of the invoice locks. */
const ORG_INVOICE_LOCK_CLASS = 4_711_031;
const INVOICE_JOB_LOCK_KEY = 4_711_2027_0031;

/**
 * Serialises writing invoices of one org for the rest of the transaction `db` is: reading the org's
 * credits and taking them happen under it, so two invoices never take the same credit.
 */
export async function lockOrgInvoices(db: Db, orgId: number): Promise<void> {
  await db.query(q`SELECT pg_advisory_xact_lock(${ORG_INVOICE_LOCK_CLASS}, ${orgId}::int)`);
}

/** Takes the invoice job's lock for the transaction `db` is; false when another deck server holds it. */
export async function tryInvoiceJobLock(db: Db): Promise<boolean> {
  return Boolean(await db.oneFirst(q`SELECT pg_try_advisory_xact_lock(${INVOICE_JOB_LOCK_KEY})`));
}
