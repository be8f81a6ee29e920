/**
 * Plans over time (subscriptions), the plan catalogue and credits: what rating needs besides the ledger
 * (billing/, core/billing/). The plan history is append-only; `organizations.plan` mirrors the plan in
 * force now, for listings.
 */
import { DEFAULT_CATALOGUE, parseCatalogue, parsePlan, type Catalogue, type Credit, type Plan, type PlanChange } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** The catalogue a platform admin set, or the built-in one. A stored one that no longer reads is refused loudly. */
export async function loadCatalogue(db: Db): Promise<Catalogue> {
  const stored = await db.maybeOneFirst(q`SELECT catalogue FROM billing_catalogue`);
  if (stored === null) return DEFAULT_CATALOGUE;
  const parsed = parseCatalogue(stored);
  if (!parsed.ok) throw new Error(`the stored billing catalogue does not read: ${parsed.error}`);
  return parsed.catalogue;
}

export async function saveCatalogue(db: Db, catalogue: Catalogue, userId: number | null): Promise<void> {
  await db.query(q`INSERT INTO billing_catalogue (id, catalogue, updated_by) VALUES (true, ${JSON.stringify(catalogue)}::jsonb, ${userId})
    ON CONFLICT (id) DO UPDATE SET catalogue = EXCLUDED.catalogue, updated_by = EXCLUDED.updated_by, updated_at = now()`);
}

/** One row of an org's plan history. */
export interface PlanChangeRow extends PlanChange {
  id: number;
  createdBy: number | null;
}

/**
 * The org's plan history, oldest first, as rating takes it. An org that never changed plan starts on the
 * catalogue's first plan with no fee (Free) at its creation.
 */
export async function planHistoryOf(db: Db, orgId: number, freePlan = "free"): Promise<PlanChangeRow[]> {
  const rows = await db.any(q`SELECT id, plan, custom_plan, starts_at, created_by FROM subscriptions WHERE org_id = ${orgId} ORDER BY starts_at, id`);
  const history: PlanChangeRow[] = rows.map((r) => {
    const change: PlanChangeRow = { id: Number(r.id), plan: String(r.plan), from: toIso(r.starts_at), createdBy: r.created_by == null ? null : Number(r.created_by) };
    if (r.custom_plan != null) {
      const p = parsePlan(r.custom_plan);
      if (p.ok) change.customPlan = p.plan;
    }
    return change;
  });
  const created = await db.maybeOneFirst(q`SELECT created_at FROM organizations WHERE id = ${orgId}`);
  if (created !== null && (history.length === 0 || Date.parse(history[0]!.from) > Date.parse(toIso(created)))) {
    history.unshift({ id: 0, plan: freePlan, from: toIso(created), createdBy: null });
  }
  return history;
}

/** Puts the org on `plan` from `startsAt` (now when not given); the history keeps what came before. */
export async function insertPlanChange(db: Db, c: { orgId: number; plan: string; customPlan?: Plan | null; startsAt?: Date; createdBy: number | null }): Promise<PlanChangeRow> {
  const r = await db.one(q`INSERT INTO subscriptions (org_id, plan, custom_plan, starts_at, created_by)
    VALUES (${c.orgId}, ${c.plan}, ${c.customPlan ? JSON.stringify(c.customPlan) : null}::jsonb,
            COALESCE(${c.startsAt ? c.startsAt.toISOString() : null}::timestamptz, now()), ${c.createdBy})
    RETURNING id, plan, starts_at, created_by`);
  // The listing's copy of the plan in force now.
  await db.query(q`UPDATE organizations o SET plan = s.plan, updated_at = now()
    FROM (SELECT plan FROM subscriptions WHERE org_id = ${c.orgId} AND starts_at <= now() ORDER BY starts_at DESC, id DESC LIMIT 1) s
    WHERE o.id = ${c.orgId}`);
  return { id: Number(r.id), plan: String(r.plan), from: toIso(r.starts_at), createdBy: r.created_by == null ? null : Number(r.created_by), ...(c.customPlan ? { customPlan: c.customPlan } : {}) };
}

/** One credit granted to an org, with what invoices already took of it. */
export interface CreditRow extends Credit {
  orgId: number;
  grantedCents: number;
  createdAt: string;
}

/** The org's credits with something left, oldest first (`cents`: what is left). */
export async function openCreditsOf(db: Db, orgId: number): Promise<CreditRow[]> {
  const rows = await db.any(q`
    SELECT c.id, c.org_id, c.cents AS granted, c.cents - COALESCE((SELECT sum(ic.cents) FROM invoice_credits ic JOIN invoices i ON i.id = ic.invoice_id
                                                                  WHERE ic.credit_id = c.id AND i.status <> 'void'), 0) AS left_cents,
           c.reason, c.created_at
      FROM billing_credits c WHERE c.org_id = ${orgId} ORDER BY c.created_at, c.id`);
  return rows
    .map((r) => ({ id: String(r.id), orgId: Number(r.org_id), cents: Number(r.left_cents), grantedCents: Number(r.granted), reason: String(r.reason), createdAt: toIso(r.created_at) }))
    .filter((c) => c.cents > 0);
}

export async function insertCredit(db: Db, c: { orgId: number; cents: number; reason: string; createdBy: number | null }): Promise<number> {
  return Number(await db.oneFirst(q`INSERT INTO billing_credits (org_id, cents, reason, created_by) VALUES (${c.orgId}, ${c.cents}, ${c.reason}, ${c.createdBy}) RETURNING id`));
}

/** The org's ledger entries of one meter stamped in [from, to) and recorded by `recordedBy`: what an invoice line came from (oldest first, at most `limit`). */
export async function ledgerEntriesOfLine(db: Db, o: { orgId: number; meter: string; from: string; to: string; recordedBy: string; limit: number }): Promise<{
  entries: Array<{ key: string; app: string | null; meter: string; quantity: string; at: string }>;
  total: number;
}> {
  // Only what the ledger held when the invoice was made: entries recorded later are on no invoice.
  const where = sql.fragment`org_id = ${o.orgId} AND meter = ${o.meter} AND at >= ${o.from}::timestamptz AND at < ${o.to}::timestamptz
    AND recorded_at <= ${o.recordedBy}::timestamptz`;
  const [rows, total] = await Promise.all([
    db.any(q`SELECT key, app, meter, quantity::text AS quantity, at FROM usage_records WHERE ${where} ORDER BY at, id LIMIT ${o.limit}`),
    db.oneFirst(q`SELECT count(*) FROM usage_records WHERE ${where}`),
  ]);
  return {
    entries: rows.map((r) => ({ key: String(r.key), app: r.app == null ? null : String(r.app), meter: String(r.meter), quantity: String(r.quantity), at: toIso(r.at) })),
    total: Number(total),
  };
}

/** Where the app's builds that are still kept left their artifacts (builds not pruned). */
export async function listKeptSlugPaths(db: Db, app: string): Promise<string[]> {
  const rows = await db.anyFirst(q`SELECT b.slug_path FROM builds b JOIN apps a ON a.id = b.app_id
    WHERE a.name = ${app} AND b.slug_path IS NOT NULL AND b.pruned_at IS NULL AND b.status = 'succeeded'`);
  return rows.map(String);
}

/** Drops the org's plan changes not yet in force (a scheduled downgrade a later change replaces); they never applied. */
export async function deleteScheduledPlanChanges(db: Db, orgId: number): Promise<number> {
  return (await db.query(q`DELETE FROM subscriptions WHERE org_id = ${orgId} AND starts_at > now()`)).rowCount;
}

/** How many plan changes the org made since `since` (its own, scheduled ones included). */
export async function countPlanChangesSince(db: Db, orgId: number, since: string): Promise<number> {
  return Number(await db.oneFirst(q`SELECT count(*) FROM subscriptions WHERE org_id = ${orgId} AND created_at >= ${since}::timestamptz`));
}
