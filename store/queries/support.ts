/**
 * What platform admins read to support users and run the business (ops/support.ts): one user with
 * their recent troubles, every organisation with its counts, plan histories of every org at once, and
 * the invoice and ledger totals of the billing overview. Each is one query across all orgs, never one
 * per org.
 */
import { parsePlan, type LedgerMeter, type PlanChange, type UsageEntry } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** Sign-ins, by password and through an identity provider. */
const SIGN_IN_ACTIONS = sql.fragment`('auth:sign-in', 'oauth:sign-in')`;

export interface SupportUserRow {
  id: number;
  email: string;
  name: string | null;
  isAdmin: boolean;
  createdAt: string;
  suspendedAt: string | null;
  suspendReason: string | null;
  mfaEnabled: boolean;
  lastSignInAt: string | null;
  /** SSH keys, and personal access tokens neither revoked nor expired. */
  keys: number;
  tokens: number;
}

/** The user with this email (case-insensitive, an exact-case match first), with what support asks first. */
export async function findSupportUser(db: Db, email: string): Promise<SupportUserRow | null> {
  const r = await db.maybeOne(q`
    SELECT u.id, u.email, u.name, u.is_admin, u.created_at, u.suspended_at, u.suspend_reason, u.mfa_enabled_at,
      (SELECT max(a.created_at) FROM audit_log a WHERE a.user_id = u.id AND a.action IN ${SIGN_IN_ACTIONS} AND a.result = 'ok') AS last_sign_in_at,
      (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id) AS keys,
      (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())) AS tokens
    FROM users u WHERE lower(u.email) = lower(${email}) ORDER BY (u.email = ${email}) DESC, u.id LIMIT 1`);
  if (!r) return null;
  return {
    id: Number(r.id), email: String(r.email), name: (r.name as string) ?? null, isAdmin: Boolean(r.is_admin), createdAt: toIso(r.created_at),
    suspendedAt: r.suspended_at == null ? null : toIso(r.suspended_at), suspendReason: (r.suspend_reason as string) ?? null,
    mfaEnabled: r.mfa_enabled_at != null, lastSignInAt: r.last_sign_in_at == null ? null : toIso(r.last_sign_in_at),
    keys: Number(r.keys), tokens: Number(r.tokens),
  };
}

/** The apps in the user's organisations and the apps they were granted a role on, by name. */
export async function appsOfUser(db: Db, userId: number): Promise<{ name: string; org: string; status: string }[]> {
  const rows = await db.any(q`SELECT a.name, o.slug, a.status FROM apps a JOIN organizations o ON o.id = a.org_id
    WHERE a.org_id IN (SELECT org_id FROM organization_members WHERE user_id = ${userId})
       OR a.id IN (SELECT app_id FROM app_members WHERE user_id = ${userId})
    ORDER BY a.name`);
  return rows.map((r) => ({ name: String(r.name), org: String(r.slug), status: String(r.status) }));
}

/** One thing that went wrong for a user, as stored: ops/support.ts words it. */
export type UserTroubleRow =
  | { kind: "deploy"; at: string; app: string; error: string | null }
  | { kind: "denied"; at: string; app: string | null; action: string; target: string | null }
  | { kind: "sign-in"; at: string; action: string; reason: string | null };

/**
 * Since `since`, newest first, at most `limit`: failed deployments of the user's apps (as `appsOfUser`
 * has them), actions of theirs that were denied, and their sign-ins that failed or were refused (the
 * step that asks an MFA user for their code is not a failure).
 */
export async function recentTroublesOfUser(db: Db, o: { userId: number; email: string; since: string; limit: number }): Promise<UserTroubleRow[]> {
  const rows = await db.any(q`
    SELECT * FROM (
      SELECT 'deploy' AS kind, coalesce(d.finished_at, d.created_at) AS at, a.name AS app, d.error, NULL AS action, NULL AS target, NULL AS reason
        FROM deployments d JOIN apps a ON a.id = d.app_id
       WHERE d.status = 'failed' AND d.created_at >= ${o.since}::timestamptz
         AND (a.org_id IN (SELECT org_id FROM organization_members WHERE user_id = ${o.userId})
              OR a.id IN (SELECT app_id FROM app_members WHERE user_id = ${o.userId}))
      UNION ALL
      SELECT 'denied', l.created_at, ap.name, NULL, l.action, l.target, l.data->>'reason'
        FROM audit_log l LEFT JOIN apps ap ON ap.name = l.target
       WHERE l.user_id = ${o.userId} AND l.result = 'denied' AND l.action NOT IN ${SIGN_IN_ACTIONS} AND l.created_at >= ${o.since}::timestamptz
      UNION ALL
      SELECT 'sign-in', l.created_at, NULL, NULL, l.action, l.target, coalesce(l.data->>'reason', l.data->>'code')
        FROM audit_log l
       WHERE l.action IN ${SIGN_IN_ACTIONS} AND l.result <> 'ok' AND l.created_at >= ${o.since}::timestamptz
         AND (l.user_id = ${o.userId} OR l.target = ${`user:${o.email.toLowerCase()}`})
         AND coalesce(l.data->>'reason', '') <> 'mfa_required'
    ) t ORDER BY at DESC LIMIT ${o.limit}`);
  return rows.map((r): UserTroubleRow => {
    const at = toIso(r.at);
    if (r.kind === "deploy") return { kind: "deploy", at, app: String(r.app), error: (r.error as string) ?? null };
    if (r.kind === "denied") return { kind: "denied", at, app: (r.app as string) ?? null, action: String(r.action), target: (r.target as string) ?? null };
    return { kind: "sign-in", at, action: String(r.action), reason: (r.reason as string) ?? null };
  });
}

export interface OrgCountsRow {
  id: number;
  slug: string;
  name: string;
  createdAt: string;
  members: number;
  apps: number;
}

/** Every organisation by slug, with how many members and apps it has. */
export async function listOrgsWithCounts(db: Db): Promise<OrgCountsRow[]> {
  const rows = await db.any(q`SELECT o.id, o.slug, o.name, o.created_at,
      (SELECT count(*) FROM organization_members m WHERE m.org_id = o.id) AS members,
      (SELECT count(*) FROM apps a WHERE a.org_id = o.id) AS apps
    FROM organizations o ORDER BY o.slug`);
  return rows.map((r) => ({ id: Number(r.id), slug: String(r.slug), name: String(r.name), createdAt: toIso(r.created_at), members: Number(r.members), apps: Number(r.apps) }));
}

/**
 * Every org's plan history, oldest first, as `planHistoryOf` (billing-plans.ts) gives one org's: an org
 * whose first change came after its creation starts on `freePlan` at its creation.
 */
export async function planHistoriesOfAllOrgs(db: Db, freePlan: string): Promise<Map<number, PlanChange[]>> {
  const rows = await db.any(q`SELECT o.id AS org_id, o.created_at, s.plan, s.custom_plan, s.starts_at
    FROM organizations o LEFT JOIN subscriptions s ON s.org_id = o.id ORDER BY o.id, s.starts_at, s.id`);
  const created = new Map<number, string>();
  const changes = new Map<number, PlanChange[]>();
  for (const r of rows) {
    const orgId = Number(r.org_id);
    created.set(orgId, toIso(r.created_at));
    if (r.plan == null) continue;
    const change: PlanChange = { plan: String(r.plan), from: toIso(r.starts_at) };
    if (r.custom_plan != null) {
      const p = parsePlan(r.custom_plan);
      if (p.ok) change.customPlan = p.plan;
    }
    const list = changes.get(orgId);
    if (list) list.push(change);
    else changes.set(orgId, [change]);
  }
  const histories = new Map<number, PlanChange[]>();
  for (const [orgId, from] of created) {
    const history = changes.get(orgId) ?? [];
    if (history.length === 0 || Date.parse(history[0]!.from) > Date.parse(from)) history.unshift({ plan: freePlan, from });
    histories.set(orgId, history);
  }
  return histories;
}

/** What invoices paid in [from, to) came to, in cents. */
export async function sumPaidInvoices(db: Db, from: string, to: string): Promise<number> {
  return Number(await db.oneFirst(q`SELECT coalesce(sum(total_cents), 0) FROM invoices
    WHERE status = 'paid' AND paid_at >= ${from}::timestamptz AND paid_at < ${to}::timestamptz`));
}

export interface OverdueInvoiceRow {
  number: string;
  org: string;
  totalCents: number;
  status: string;
  openedAt: string | null;
}

/** Invoices still open that were issued before `openedBefore`, and uncollectible ones, oldest first (at most `limit`). */
export async function listOverdueInvoices(db: Db, o: { openedBefore: string; limit: number }): Promise<OverdueInvoiceRow[]> {
  const rows = await db.any(q`SELECT number, org_slug, total_cents, status, opened_at FROM invoices
    WHERE status = 'uncollectible' OR (status = 'open' AND opened_at < ${o.openedBefore}::timestamptz)
    ORDER BY opened_at NULLS LAST, id LIMIT ${o.limit}`);
  return rows.map((r) => ({
    number: String(r.number), org: String(r.org_slug), totalCents: Number(r.total_cents), status: String(r.status),
    openedAt: r.opened_at == null ? null : toIso(r.opened_at),
  }));
}

/**
 * Every org's ledger over [from, to) summed per app, meter and UTC day: entries rating takes as they
 * are (each stamped at the day's last entry), a few per app and day instead of one per hour and build.
 */
export async function dailyLedgerOfAllOrgs(db: Db, from: string, to: string): Promise<Map<number, UsageEntry[]>> {
  const rows = await db.any(q`SELECT org_id, app, meter, date_trunc('day', at AT TIME ZONE 'UTC') AS day, sum(quantity)::text AS quantity, max(at) AS at
    FROM usage_records WHERE at >= ${from}::timestamptz AND at < ${to}::timestamptz GROUP BY 1, 2, 3, 4`);
  const byOrg = new Map<number, UsageEntry[]>();
  for (const r of rows) {
    const orgId = Number(r.org_id);
    const app = r.app == null ? null : String(r.app);
    const at = toIso(r.at);
    const entries = byOrg.get(orgId) ?? [];
    const n = Number(r.quantity);
    entries.push({ id: `${app ?? ""}:${String(r.meter)}:${at.slice(0, 10)}`, orgId, app, meter: r.meter as LedgerMeter, quantity: Number.isSafeInteger(n) ? n : BigInt(String(r.quantity)), at });
    byOrg.set(orgId, entries);
  }
  return byOrg;
}
