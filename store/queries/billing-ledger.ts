/**
 * The usage ledger (`usage_records`, append-only) and each org's billing account (spend cap, cap
 * notices, Stripe link). Every entry carries an idempotency key naming the usage it counts
 * (`build:<id>`, `bw:<batch>:<app>:<hour>`, `storage:<app>:<hour>`, `domain:<id>:<day>`): recording it
 * again, after a retry, a restart or a database outage, adds nothing. Entries outlive their app (no
 * foreign key): usage belongs to the org, and `app` keeps the name it had.
 */
import { LEDGER_METERS, type LedgerMeter, type UsageEntry } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** One entry to record. `quantity` is a whole number of the meter's ledger units. */
export interface NewUsageEntry {
  key: string;
  orgId: number;
  appId: number | null;
  app: string | null;
  meter: LedgerMeter;
  quantity: number | bigint;
  at: Date | string;
}

/** At most this many rows per INSERT, so a long gap filled for many apps stays within PostgreSQL's limits. */
const INSERT_CHUNK = 5_000;

/** Records the entries whose key is new; returns how many were. */
export async function recordUsage(db: Db, entries: readonly NewUsageEntry[]): Promise<number> {
  for (const e of entries) checkEntry(e);
  const ats = entries.map((e) => toInstant(e.at, `usage ${e.key}`));
  let added = 0;
  for (let i = 0; i < entries.length; i += INSERT_CHUNK) {
    const chunk = entries.slice(i, i + INSERT_CHUNK);
    const result = await db.query(q`
      INSERT INTO usage_records (key, org_id, app_id, app, meter, quantity, at)
      SELECT * FROM unnest(${sql.array(chunk.map((e) => e.key), "text")}::text[], ${sql.array(chunk.map((e) => e.orgId), "int8")}::int8[],
                           ${sql.array(chunk.map((e) => e.appId), "int8")}::int8[], ${sql.array(chunk.map((e) => e.app), "text")}::text[],
                           ${sql.array(chunk.map((e) => e.meter), "text")}::text[], ${sql.array(chunk.map((e) => String(e.quantity)), "text")}::int8[],
                           ${sql.array(ats.slice(i, i + INSERT_CHUNK), "text")}::timestamptz[])
      ON CONFLICT (key) DO NOTHING`);
    added += result.rowCount;
  }
  return added;
}

function checkEntry(e: NewUsageEntry): void {
  const n = e.quantity;
  if (typeof n === "bigint" ? n < 0n : !(Number.isSafeInteger(n) && n >= 0)) throw new RangeError(`usage ${e.key}: quantity ${String(n)} is not a whole number ≥ 0`);
  if (!(LEDGER_METERS as readonly string[]).includes(e.meter)) throw new RangeError(`usage ${e.key}: unknown meter ${JSON.stringify(e.meter)}`);
}

/** `v` as an ISO instant, so PostgreSQL never reads it in its session's time zone. */
function toInstant(v: Date | string, what: string): string {
  const ms = v instanceof Date ? v.getTime() : Date.parse(v);
  if (Number.isNaN(ms)) throw new RangeError(`${what}: ${String(v)} is not a time`);
  return new Date(ms).toISOString();
}

/** A ledger quantity read as text: a number while exact, else a bigint. */
function readQuantity(v: unknown): number | bigint {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : BigInt(String(v));
}

/** The org's entries with `at` in [from, to), oldest first, as rating takes them. */
export async function usageEntriesOf(db: Db, orgId: number, from: Date | string, to: Date | string): Promise<UsageEntry[]> {
  const rows = await db.any(q`SELECT key, org_id, app, meter, quantity::text AS quantity, at FROM usage_records
    WHERE org_id = ${orgId} AND at >= ${toInstant(from, "from")}::timestamptz AND at < ${toInstant(to, "to")}::timestamptz ORDER BY at, id`);
  return rows.map((r) => ({
    id: String(r.key),
    orgId: Number(r.org_id),
    app: r.app == null ? null : String(r.app),
    meter: r.meter as LedgerMeter,
    quantity: readQuantity(r.quantity),
    // Rating takes only ISO 8601 instants.
    at: toIso(r.at),
  }));
}

/** What an org (or one of its apps) used of one meter over a time range. */
export interface UsageTotal {
  meter: LedgerMeter;
  app: string | null;
  quantity: bigint;
  entries: number;
}

/** The org's usage with `at` in [from, to), summed per meter and app (by name, as invoices show it). */
export async function usageTotals(db: Db, orgId: number, from: Date | string, to: Date | string): Promise<UsageTotal[]> {
  const rows = await db.any(q`SELECT meter, app, sum(quantity)::text AS quantity, count(*)::int4 AS entries FROM usage_records
    WHERE org_id = ${orgId} AND at >= ${toInstant(from, "from")}::timestamptz AND at < ${toInstant(to, "to")}::timestamptz
    GROUP BY meter, app ORDER BY meter, app NULLS FIRST`);
  return rows.map((r) => ({ meter: r.meter as LedgerMeter, app: r.app == null ? null : String(r.app), quantity: BigInt(String(r.quantity)), entries: Number(r.entries) }));
}

/**
 * Records the build-seconds entry of finished builds that have none: each build's wall-clock time,
 * rounded to the second, at the moment it finished, charged to its app's org. Failed builds count as
 * well: they held a build machine as long as a successful one. `buildIds` limits it to those builds
 * (finishing one); `finishedSince` to builds finished since then (the sweeper). Returns how many were new.
 */
export async function recordBuildUsage(db: Db, which: { buildIds: readonly number[] } | { finishedSince: Date }): Promise<number> {
  const filter = "buildIds" in which
    ? q`b.id = ANY(${sql.array(which.buildIds, "int8")}::int8[])`
    : q`b.finished_at >= ${which.finishedSince.toISOString()}::timestamptz`;
  const result = await db.query(q`
    INSERT INTO usage_records (key, org_id, app_id, app, meter, quantity, at)
    SELECT 'build:' || b.id, a.org_id, a.id, a.name, 'build_seconds',
           greatest(0, round(extract(epoch FROM b.finished_at - b.started_at)))::int8, b.finished_at
      FROM builds b JOIN apps a ON a.id = b.app_id
     WHERE b.finished_at IS NOT NULL AND ${filter}
       AND NOT EXISTS (SELECT 1 FROM usage_records u WHERE u.key = 'build:' || b.id)
    ON CONFLICT (key) DO NOTHING`);
  return result.rowCount;
}

/** Which of `keys` the ledger holds. */
export async function findRecordedKeys(db: Db, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const found = await db.anyFirst(q`SELECT key FROM usage_records WHERE key = ANY(${sql.array(keys, "text")}::text[])`);
  return new Set(found.map(String));
}

/** An app as the ledger jobs see it. */
export interface MeteredApp {
  id: number;
  name: string;
  orgId: number;
  createdAt: string;
}

export async function listMeteredApps(db: Db): Promise<MeteredApp[]> {
  const rows = await db.any(q`SELECT id, name, org_id, created_at FROM apps ORDER BY id`);
  return rows.map((r) => ({ id: Number(r.id), name: String(r.name), orgId: Number(r.org_id), createdAt: toIso(r.created_at) }));
}

/** Every custom domain with its app. */
export async function listMeteredDomains(db: Db): Promise<Array<{ id: number; domain: string; app: MeteredApp }>> {
  const rows = await db.any(q`SELECT d.id, d.domain, a.id AS app_id, a.name, a.org_id, a.created_at FROM domains d JOIN apps a ON a.id = d.app_id ORDER BY d.id`);
  return rows.map((r) => ({
    id: Number(r.id),
    domain: String(r.domain),
    app: { id: Number(r.app_id), name: String(r.name), orgId: Number(r.org_id), createdAt: toIso(r.created_at) },
  }));
}

/** First key of the advisory locks the ledger jobs run under ("ledg"); the second names the job. */
const LEDGER_LOCK_CLASS = 0x6c656467;

/** Takes the job's lock for the transaction `tx` is; false when another deck server is running it. */
export async function tryLedgerJobLock(tx: Db, job: number): Promise<boolean> {
  return Boolean(await tx.oneFirst(q`SELECT pg_try_advisory_xact_lock(${LEDGER_LOCK_CLASS}::int4, ${job}::int4)`));
}

// ---- billing accounts ----

/** An org's billing account; an org without a row has the defaults (no cap, no notices, no Stripe). */
export interface BillingAccount {
  orgId: number;
  /** null: no cap. */
  spendCapCents: number | null;
  /** The cap thresholds (percent) already notified, per period key ("2027-01"). */
  capNotices: Record<string, number[]>;
  stripeCustomerId: string | null;
  stripeSubscriptionId: string | null;
  stripeStatus: string | null;
  stripeStatusAt: string | null;
}

export async function loadBillingAccount(db: Db, orgId: number): Promise<BillingAccount> {
  const r = await db.maybeOne(q`SELECT * FROM billing_accounts WHERE org_id = ${orgId}`);
  if (!r) return { orgId, spendCapCents: null, capNotices: {}, stripeCustomerId: null, stripeSubscriptionId: null, stripeStatus: null, stripeStatusAt: null };
  return {
    orgId,
    spendCapCents: r.spend_cap_cents == null ? null : Number(r.spend_cap_cents),
    capNotices: (typeof r.cap_notices === "string" ? JSON.parse(r.cap_notices) : r.cap_notices) as Record<string, number[]>,
    stripeCustomerId: (r.stripe_customer_id as string | null) ?? null,
    stripeSubscriptionId: (r.stripe_subscription_id as string | null) ?? null,
    stripeStatus: (r.stripe_status as string | null) ?? null,
    stripeStatusAt: r.stripe_status_at == null ? null : toIso(r.stripe_status_at),
  };
}

/** Sets the org's spend cap in whole cents; null removes it. */
export async function setSpendCap(db: Db, orgId: number, cents: number | null): Promise<void> {
  if (cents !== null && !(Number.isSafeInteger(cents) && cents >= 0)) throw new RangeError(`spend cap ${cents} is not a whole number of cents ≥ 0`);
  await db.query(q`INSERT INTO billing_accounts (org_id, spend_cap_cents) VALUES (${orgId}, ${cents})
    ON CONFLICT (org_id) DO UPDATE SET spend_cap_cents = EXCLUDED.spend_cap_cents, updated_at = now()`);
}

/**
 * Notes that the org was told it reached `threshold` percent of its cap in `periodKey`; true when this
 * call noted it, false when it was noted before. One statement, so two deck servers crossing the same
 * threshold at once send one notice.
 */
export async function markCapNotice(db: Db, orgId: number, periodKey: string, threshold: number): Promise<boolean> {
  const t = JSON.stringify([threshold]);
  const row = await db.maybeOne(q`
    INSERT INTO billing_accounts (org_id, cap_notices) VALUES (${orgId}, jsonb_build_object(${periodKey}::text, ${t}::jsonb))
    ON CONFLICT (org_id) DO UPDATE
      SET cap_notices = jsonb_set(billing_accounts.cap_notices, ARRAY[${periodKey}::text],
                                  COALESCE(billing_accounts.cap_notices -> ${periodKey}::text, '[]'::jsonb) || ${t}::jsonb),
          updated_at = now()
      WHERE NOT COALESCE(billing_accounts.cap_notices -> ${periodKey}::text, '[]'::jsonb) @> ${t}::jsonb
    RETURNING org_id`);
  return row !== null;
}

/**
 * Saves what deck knows of the org's Stripe customer and subscription; fields left out keep their
 * value. A status older than the stored one (`statusAt`; Stripe may deliver events out of order) is
 * not saved over it.
 */
export async function saveStripeLink(db: Db, orgId: number, link: { customerId?: string; subscriptionId?: string; status?: string; statusAt?: Date | string }): Promise<void> {
  const statusAt = link.statusAt === undefined ? null : toInstant(link.statusAt, "Stripe status time");
  await db.query(q`
    INSERT INTO billing_accounts (org_id, stripe_customer_id, stripe_subscription_id, stripe_status, stripe_status_at)
    VALUES (${orgId}, ${link.customerId ?? null}, ${link.subscriptionId ?? null}, ${link.status ?? null},
            CASE WHEN ${link.status ?? null}::text IS NULL THEN NULL ELSE COALESCE(${statusAt}::timestamptz, now()) END)
    ON CONFLICT (org_id) DO UPDATE SET
      stripe_customer_id = COALESCE(EXCLUDED.stripe_customer_id, billing_accounts.stripe_customer_id),
      stripe_subscription_id = COALESCE(EXCLUDED.stripe_subscription_id, billing_accounts.stripe_subscription_id),
      stripe_status = CASE WHEN EXCLUDED.stripe_status IS NOT NULL
                            AND (billing_accounts.stripe_status_at IS NULL OR EXCLUDED.stripe_status_at >= billing_accounts.stripe_status_at)
                           THEN EXCLUDED.stripe_status ELSE billing_accounts.stripe_status END,
      stripe_status_at = CASE WHEN EXCLUDED.stripe_status IS NOT NULL
                               AND (billing_accounts.stripe_status_at IS NULL OR EXCLUDED.stripe_status_at >= billing_accounts.stripe_status_at)
                              THEN EXCLUDED.stripe_status_at ELSE billing_accounts.stripe_status_at END,
      updated_at = now()`);
}

/** The org whose Stripe customer this is, or null. */
export async function findOrgByStripeCustomer(db: Db, customerId: string): Promise<number | null> {
  const id = await db.maybeOneFirst(q`SELECT org_id FROM billing_accounts WHERE stripe_customer_id = ${customerId}`);
  return id === null ? null : Number(id);
}
