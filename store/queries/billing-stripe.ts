/**
 * What deck keeps about Stripe beyond billing_accounts' customer and subscription (migration 032):
 * which orgs Stripe has the plan of, how far usage reporting has come, the webhook events handled and
 * Stripe's invoices as its webhooks described them. Used by billing/stripe-sync only.
 */
import { q, sql, toIso, type Db } from "./db.ts";

// ---- orgs and their plans ----

/**
 * Orgs whose Stripe subscription may not match deck: no Stripe customer yet, or a plan in force (the
 * newest plan change at or before `now`; 0 for the Free plan an org starts on) other than the one last
 * synced. Orgs tried least recently first, so a few that keep failing do not hold up the rest.
 */
export async function listOrgsToSyncWithStripe(db: Db, o: { now: Date; limit: number }): Promise<number[]> {
  const ids = await db.anyFirst(q`
    SELECT o.id FROM organizations o
      LEFT JOIN stripe_org_sync s ON s.org_id = o.id
      LEFT JOIN billing_accounts b ON b.org_id = o.id
      LEFT JOIN LATERAL (SELECT p.id FROM subscriptions p WHERE p.org_id = o.id AND p.starts_at <= ${o.now.toISOString()}::timestamptz
                          ORDER BY p.starts_at DESC, p.id DESC LIMIT 1) p ON true
     WHERE b.stripe_customer_id IS NULL OR s.synced_change_id IS NULL OR s.synced_change_id <> COALESCE(p.id, 0)
     ORDER BY s.attempted_at ASC NULLS FIRST, o.id
     LIMIT ${o.limit}`);
  return ids.map(Number);
}

/** An org as Stripe's customer needs it, and what deck knows of its Stripe side. */
export interface StripeOrg {
  id: number;
  slug: string;
  name: string;
  /** Who Stripe sends invoices and receipts to: the org's first owner (else its first member); null with no members. */
  email: string | null;
  customerId: string | null;
  subscriptionId: string | null;
  /** The plan change Stripe's subscription was last set to (0: the Free plan the org started on); null: never. */
  syncedChangeId: number | null;
  /** Usage from this moment is reported to Stripe; null until the org's subscription is made. */
  usageFrom: string | null;
}

export async function findStripeOrg(db: Db, orgId: number): Promise<StripeOrg | null> {
  const r = await db.maybeOne(q`
    SELECT o.id, o.slug, o.name, b.stripe_customer_id, b.stripe_subscription_id, s.synced_change_id, s.usage_from,
           (SELECT u.email FROM organization_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = o.id
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'member' THEN 2 ELSE 3 END, m.joined_at, u.id LIMIT 1) AS email
      FROM organizations o
      LEFT JOIN billing_accounts b ON b.org_id = o.id
      LEFT JOIN stripe_org_sync s ON s.org_id = o.id
     WHERE o.id = ${orgId}`);
  if (!r) return null;
  return {
    id: Number(r.id),
    slug: String(r.slug),
    name: String(r.name),
    email: r.email == null ? null : String(r.email),
    customerId: r.stripe_customer_id == null ? null : String(r.stripe_customer_id),
    subscriptionId: r.stripe_subscription_id == null ? null : String(r.stripe_subscription_id),
    syncedChangeId: r.synced_change_id == null ? null : Number(r.synced_change_id),
    usageFrom: r.usage_from == null ? null : toIso(r.usage_from),
  };
}

/** Arbitrary constants shared by every deck process: the keys of the Stripe locks ("strp"). */
const STRIPE_ORG_LOCK_CLASS = 0x73747270;
const STRIPE_JOB_LOCK_CLASS = 0x73747271;

/**
 * Serialises syncing one org with Stripe for the rest of the transaction `tx` is: a plan change synced
 * at once and the billing round's retry never set the subscription at the same time.
 */
export async function lockStripeOrg(tx: Db, orgId: number): Promise<void> {
  await tx.query(q`SELECT pg_advisory_xact_lock(${STRIPE_ORG_LOCK_CLASS}::int4, ${orgId}::int4)`);
}

export type StripeJob = "usage" | "invoices";
const STRIPE_JOB_KEYS: Readonly<Record<StripeJob, number>> = { usage: 1, invoices: 2 };

/** Takes a Stripe job's lock for the transaction `tx` is; false when another deck server holds it. */
export async function tryStripeJobLock(tx: Db, job: StripeJob): Promise<boolean> {
  return Boolean(await tx.oneFirst(q`SELECT pg_try_advisory_xact_lock(${STRIPE_JOB_LOCK_CLASS}::int4, ${STRIPE_JOB_KEYS[job]}::int4)`));
}

/** Records that Stripe's subscription now follows plan change `changeId`; the first time, usage is reported from `at` on. */
export async function markStripeOrgSynced(db: Db, s: { orgId: number; changeId: number; at: Date }): Promise<void> {
  const at = s.at.toISOString();
  await db.query(q`
    INSERT INTO stripe_org_sync (org_id, synced_change_id, usage_from, last_error, attempted_at)
    VALUES (${s.orgId}, ${s.changeId}, ${at}::timestamptz, NULL, ${at}::timestamptz)
    ON CONFLICT (org_id) DO UPDATE SET synced_change_id = EXCLUDED.synced_change_id,
      usage_from = COALESCE(stripe_org_sync.usage_from, EXCLUDED.usage_from), last_error = NULL,
      attempted_at = EXCLUDED.attempted_at, updated_at = now()`);
}

/** Records a failed sync; returns the error it replaced (so the same trouble is logged once). */
export async function noteStripeOrgError(db: Db, e: { orgId: number; message: string; at: Date }): Promise<string | null> {
  const before = await db.maybeOneFirst(q`SELECT last_error FROM stripe_org_sync WHERE org_id = ${e.orgId}`);
  await db.query(q`
    INSERT INTO stripe_org_sync (org_id, last_error, attempted_at) VALUES (${e.orgId}, ${e.message}, ${e.at.toISOString()}::timestamptz)
    ON CONFLICT (org_id) DO UPDATE SET last_error = EXCLUDED.last_error, attempted_at = EXCLUDED.attempted_at, updated_at = now()`);
  return before == null ? null : String(before);
}

// ---- usage reporting ----

export interface UsageCursor {
  throughId: number;
  horizonId: number;
  horizonAt: string | null;
}

export async function loadUsageCursor(db: Db): Promise<UsageCursor> {
  const r = await db.maybeOne(q`SELECT through_id, horizon_id, horizon_at FROM stripe_usage_cursor`);
  if (!r) return { throughId: 0, horizonId: 0, horizonAt: null };
  return { throughId: Number(r.through_id), horizonId: Number(r.horizon_id), horizonAt: r.horizon_at == null ? null : toIso(r.horizon_at) };
}

/** Saves the cursor (never moving `through_id` back) and forgets the sent marks it has passed. */
export async function saveUsageCursor(db: Db, c: UsageCursor): Promise<void> {
  await db.query(q`
    INSERT INTO stripe_usage_cursor (id, through_id, horizon_id, horizon_at) VALUES (true, ${c.throughId}, ${c.horizonId}, ${c.horizonAt}::timestamptz)
    ON CONFLICT (id) DO UPDATE SET through_id = GREATEST(stripe_usage_cursor.through_id, EXCLUDED.through_id),
      horizon_id = EXCLUDED.horizon_id, horizon_at = EXCLUDED.horizon_at`);
  await db.query(q`DELETE FROM stripe_usage_sent WHERE usage_id <= (SELECT through_id FROM stripe_usage_cursor)`);
}

/** The newest ledger id handed out that this transaction can see (0 for an empty ledger). */
export async function findNewestUsageId(db: Db): Promise<number> {
  return Number(await db.oneFirst(q`SELECT COALESCE(max(id), 0) FROM usage_records`));
}

/** A ledger entry to report, with the Stripe customer of its org. */
export interface UsageToReport {
  id: number;
  key: string;
  meter: string;
  /** Text: byte counts may pass 2^53. */
  quantity: string;
  at: string;
  customerId: string;
}

/**
 * Ledger entries with id in (afterId, throughId] not yet dealt with, of orgs with a Stripe customer,
 * made at or after the org's `usage_from` and with something in them, by id.
 */
export async function listUsageToReport(db: Db, o: { afterId: number; throughId: number; limit: number }): Promise<UsageToReport[]> {
  const rows = await db.any(q`
    SELECT u.id, u.key, u.meter, u.quantity::text AS quantity, u.at, b.stripe_customer_id
      FROM stripe_org_sync s
      JOIN billing_accounts b ON b.org_id = s.org_id AND b.stripe_customer_id IS NOT NULL
      JOIN usage_records u ON u.org_id = s.org_id AND u.at >= s.usage_from
     WHERE s.usage_from IS NOT NULL AND u.id > ${o.afterId} AND u.id <= ${o.throughId} AND u.quantity > 0
       AND NOT EXISTS (SELECT 1 FROM stripe_usage_sent r WHERE r.usage_id = u.id)
     ORDER BY u.id
     LIMIT ${o.limit}`);
  return rows.map((r) => ({
    id: Number(r.id), key: String(r.key), meter: String(r.meter), quantity: String(r.quantity), at: toIso(r.at), customerId: String(r.stripe_customer_id),
  }));
}

export type UsageOutcome = "accepted" | "rejected" | "too_old";

/** Marks ledger entries dealt with, so they are never sent again. */
export async function markUsageSent(db: Db, marks: ReadonlyArray<{ usageId: number; outcome: UsageOutcome }>): Promise<void> {
  if (marks.length === 0) return;
  await db.query(q`
    INSERT INTO stripe_usage_sent (usage_id, outcome)
    SELECT * FROM unnest(${sql.array(marks.map((m) => m.usageId), "int8")}::int8[], ${sql.array(marks.map((m) => m.outcome), "text")}::text[])
    ON CONFLICT (usage_id) DO NOTHING`);
}

// ---- webhooks ----

/** Records a webhook event as handled; false when it was already (Stripe delivers at least once). */
export async function recordStripeEvent(db: Db, e: { id: string; type: string; created: number }): Promise<boolean> {
  const row = await db.maybeOne(q`INSERT INTO stripe_events (id, type, created) VALUES (${e.id}, ${e.type}, to_timestamp(${e.created}))
    ON CONFLICT (id) DO NOTHING RETURNING id`);
  return row !== null;
}

/** An org's Stripe subscription status, locked for the rest of the transaction; null when it has no billing account. */
export async function lockStripeSubscriptionStatus(db: Db, orgId: number): Promise<{ subscriptionId: string | null; status: string | null; statusAt: string | null } | null> {
  const r = await db.maybeOne(q`SELECT stripe_subscription_id, stripe_status, stripe_status_at FROM billing_accounts WHERE org_id = ${orgId} FOR UPDATE`);
  if (!r) return null;
  return {
    subscriptionId: r.stripe_subscription_id == null ? null : String(r.stripe_subscription_id),
    status: r.stripe_status == null ? null : String(r.stripe_status),
    statusAt: r.stripe_status_at == null ? null : toIso(r.stripe_status_at),
  };
}

/** Stripe's invoice as deck last heard of it. */
export interface StripeInvoiceRow {
  id: string;
  customerId: string;
  orgId: number | null;
  periodStart: string;
  periodEnd: string;
  status: string;
  /** Unix seconds: `created` of the event that set the status. */
  statusAt: number;
  amountDueCents: number;
  hostedUrl: string | null;
  deckInvoiceId: number | null;
}

function toStripeInvoice(r: Record<string, unknown>): StripeInvoiceRow {
  return {
    id: String(r.id),
    customerId: String(r.customer_id),
    orgId: r.org_id == null ? null : Number(r.org_id),
    periodStart: toIso(r.period_start),
    periodEnd: toIso(r.period_end),
    status: String(r.status),
    statusAt: Math.floor(Date.parse(toIso(r.status_at)) / 1000),
    amountDueCents: Number(r.amount_due_cents),
    hostedUrl: r.hosted_url == null ? null : String(r.hosted_url),
    deckInvoiceId: r.deck_invoice_id == null ? null : Number(r.deck_invoice_id),
  };
}

export type NewStripeInvoice = Omit<StripeInvoiceRow, "deckInvoiceId">;

/**
 * Stores a Stripe invoice deck had not heard of and returns null; for one it had, returns the stored
 * row locked for the rest of the transaction (the caller decides whether the new status applies).
 */
export async function insertOrLockStripeInvoice(db: Db, i: NewStripeInvoice): Promise<StripeInvoiceRow | null> {
  const inserted = await db.maybeOne(q`
    INSERT INTO stripe_invoices (id, customer_id, org_id, period_start, period_end, status, status_at, amount_due_cents, hosted_url)
    VALUES (${i.id}, ${i.customerId}, ${i.orgId}, ${i.periodStart}::timestamptz, ${i.periodEnd}::timestamptz, ${i.status},
            to_timestamp(${i.statusAt}), ${i.amountDueCents}, ${i.hostedUrl})
    ON CONFLICT (id) DO NOTHING RETURNING id`);
  if (inserted) return null;
  return toStripeInvoice(await db.one(q`SELECT * FROM stripe_invoices WHERE id = ${i.id} FOR UPDATE`));
}

/** Saves a newer status (and what came with it) of a Stripe invoice. */
export async function updateStripeInvoice(db: Db, i: Pick<StripeInvoiceRow, "id" | "status" | "statusAt" | "amountDueCents" | "hostedUrl">): Promise<void> {
  await db.query(q`UPDATE stripe_invoices SET status = ${i.status}, status_at = to_timestamp(${i.statusAt}), amount_due_cents = ${i.amountDueCents},
    hosted_url = COALESCE(${i.hostedUrl}, hosted_url), updated_at = now() WHERE id = ${i.id}`);
}

export async function setStripeInvoiceDeckInvoice(db: Db, l: { id: string; deckInvoiceId: number }): Promise<void> {
  await db.query(q`UPDATE stripe_invoices SET deck_invoice_id = ${l.deckInvoiceId}, updated_at = now() WHERE id = ${l.id}`);
}

/**
 * Stripe invoices not linked yet whose org now has a deck invoice (not void, not linked to another
 * Stripe invoice) for the period ending when theirs ends: deck closed the period after Stripe's webhook
 * came. Locked for the rest of the transaction; newest status first, so a period's live invoice wins
 * over one Stripe voided.
 */
export async function lockStripeInvoicesToLink(db: Db, limit: number): Promise<StripeInvoiceRow[]> {
  const rows = await db.any(q`
    SELECT s.* FROM stripe_invoices s
     WHERE s.deck_invoice_id IS NULL AND s.org_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = s.org_id AND i.period_end = s.period_end AND i.status <> 'void' AND i.stripe_invoice_id IS NULL)
     ORDER BY s.status = 'void', s.status_at DESC, s.id
     LIMIT ${limit}
     FOR UPDATE OF s SKIP LOCKED`);
  return rows.map(toStripeInvoice);
}
