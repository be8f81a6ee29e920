import type { Notice } from "../../core/index.ts";
import { decryptSecret, encryptSecret } from "../secret-box.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/**
 * Notification channels and the outbox notices are sent from (migration 024). A channel's target is
 * sealed at rest: a webhook URL is its own password.
 */

export type NotifyKind = "webhook" | "slack" | "email";
export const NOTIFY_KINDS: readonly NotifyKind[] = ["webhook", "slack", "email"];

/** The channel notices wake senders on (every deck server listens). */
export const NOTIFY_CHANNEL = "deck_notify";

export interface NotifyChannelRow {
  id: number;
  orgId: number;
  kind: NotifyKind;
  /** What users see: the target with its secret parts masked. */
  targetDisplay: string;
  createdBy: number | null;
  createdAt: string;
}

/** The last send to a channel, whatever became of it. */
export interface LastDelivery {
  at: string;
  ok: boolean;
  /** Why it failed (null when it was delivered). */
  error: string | null;
}

export interface NotifyChannelSummary extends NotifyChannelRow {
  createdByEmail: string | null;
  /** Notices waiting to be sent or being sent. */
  pending: number;
  /** Notices deck gave up on. */
  dead: number;
  last: LastDelivery | null;
}

const toChannel = (r: Record<string, unknown>): NotifyChannelRow => ({
  id: Number(r.id), orgId: Number(r.org_id), kind: String(r.kind) as NotifyKind, targetDisplay: String(r.target_display),
  createdBy: r.created_by == null ? null : Number(r.created_by), createdAt: toIso(r.created_at),
});

export async function insertNotifyChannel(db: Db, c: { orgId: number; kind: NotifyKind; target: string; targetDisplay: string; createdBy: number | null }): Promise<NotifyChannelRow> {
  return toChannel(await db.one(q`INSERT INTO notify_channels (org_id, kind, target, target_display, created_by)
    VALUES (${c.orgId}, ${c.kind}, ${encryptSecret(c.target)}, ${c.targetDisplay}, ${c.createdBy}) RETURNING *`));
}

/** The org's channels with what became of their notices, oldest channel first. */
export async function listNotifyChannels(db: Db, orgId: number): Promise<NotifyChannelSummary[]> {
  const rows = await db.any(q`
    SELECT c.*, u.email AS created_by_email,
           (SELECT count(*) FROM notify_outbox o WHERE o.channel_id = c.id AND o.status IN ('pending', 'sending')) AS pending,
           (SELECT count(*) FROM notify_outbox o WHERE o.channel_id = c.id AND o.status = 'dead') AS dead,
           l.last_attempt_at, l.status AS last_status, l.last_error
      FROM notify_channels c
      LEFT JOIN users u ON u.id = c.created_by
      LEFT JOIN LATERAL (SELECT o.last_attempt_at, o.status, o.last_error FROM notify_outbox o
                          WHERE o.channel_id = c.id AND o.last_attempt_at IS NOT NULL AND o.status <> 'sending'
                          ORDER BY o.last_attempt_at DESC, o.id DESC LIMIT 1) l ON true
     WHERE c.org_id = ${orgId}
     ORDER BY c.id`);
  return rows.map((r) => ({
    ...toChannel(r),
    createdByEmail: r.created_by_email == null ? null : String(r.created_by_email),
    pending: Number(r.pending),
    dead: Number(r.dead),
    last: r.last_attempt_at == null ? null : { at: toIso(r.last_attempt_at), ok: r.last_status === "sent", error: r.last_status === "sent" ? null : String(r.last_error ?? "") },
  }));
}

/** Removes a channel of the org, with its queued notices; false when the org has no such channel. */
export async function deleteNotifyChannel(db: Db, orgId: number, id: number): Promise<NotifyChannelRow | null> {
  const r = await db.maybeOne(q`DELETE FROM notify_channels WHERE id = ${id} AND org_id = ${orgId} RETURNING *`);
  return r ? toChannel(r) : null;
}

/**
 * Queues the notice once for every channel of its org; a notice already queued under its key stays
 * as it is (sent once per channel). Wakes the senders. Returns the channels it was queued for now.
 */
export async function enqueueNotice(db: Db, notice: Notice): Promise<number[]> {
  const ids = await db.anyFirst(q`INSERT INTO notify_outbox (channel_id, notice_key, payload)
    SELECT id, ${notice.key}, ${sql.jsonb(notice as never)} FROM notify_channels WHERE org_id = ${notice.orgId}
    ON CONFLICT (channel_id, notice_key) DO NOTHING
    RETURNING channel_id`);
  if (ids.length > 0) await db.query(q`SELECT pg_notify(${NOTIFY_CHANNEL}, ${notice.key.slice(0, 200)})`);
  return ids.map(Number);
}

/** An outbox row a sender took: the notice, and the channel it goes to with its target opened. */
export interface ClaimedNotice {
  id: number;
  channelId: number;
  kind: NotifyKind;
  /** The target in clear; null when it cannot be opened (see `targetError`). */
  target: string | null;
  targetError?: string;
  notice: Notice;
  /** Sends begun, this one included: the claim's token for marking it. */
  attempts: number;
  createdAt: string;
}

/** A row is due: waiting and its time has come, or its sender's lease ran out. */
const DUE = sql.fragment`((o.status = 'pending' AND o.next_attempt_at <= now()) OR (o.status = 'sending' AND o.lease_until < now()))`;

/**
 * Takes up to `limit` due rows, skipping those another sender holds, and leases them for `leaseSeconds`.
 * Fair between organisations: each gets at most `perOrg` rows in flight (across every sender), its
 * oldest first, so one org's flood of notices or its channel that times out cannot hold up another's.
 */
export async function claimNotices(db: Db, options: { limit: number; leaseSeconds: number; perOrg?: number }): Promise<ClaimedNotice[]> {
  const perOrg = options.perOrg ?? options.limit;
  const rows = await db.any(q`
    WITH busy AS (
      SELECT c.org_id, count(*) AS n FROM notify_outbox o JOIN notify_channels c ON c.id = o.channel_id
       WHERE o.status = 'sending' AND o.lease_until >= now() GROUP BY c.org_id
    ), orgs AS (
      SELECT DISTINCT c.org_id FROM notify_outbox o JOIN notify_channels c ON c.id = o.channel_id WHERE ${DUE}
    ), candidates AS (
      SELECT orgs.org_id, x.id, x.next_attempt_at FROM orgs
      CROSS JOIN LATERAL (
        SELECT o.id, o.next_attempt_at FROM notify_outbox o JOIN notify_channels c ON c.id = o.channel_id
         WHERE c.org_id = orgs.org_id AND ${DUE}
         ORDER BY o.next_attempt_at, o.id LIMIT ${perOrg}
         FOR UPDATE OF o SKIP LOCKED
      ) x
    ), ranked AS (
      SELECT k.id, k.next_attempt_at, row_number() OVER (PARTITION BY k.org_id ORDER BY k.next_attempt_at, k.id) AS n, COALESCE(b.n, 0) AS busy
        FROM candidates k LEFT JOIN busy b ON b.org_id = k.org_id
    ), picked AS (
      SELECT id FROM ranked WHERE n + busy <= ${perOrg} ORDER BY n, next_attempt_at, id LIMIT ${options.limit}
    )
    UPDATE notify_outbox o
       SET status = 'sending', attempts = o.attempts + 1, last_attempt_at = now(),
           lease_until = now() + make_interval(secs => ${options.leaseSeconds})
      FROM notify_channels c
     WHERE c.id = o.channel_id AND o.id IN (SELECT id FROM picked)
    RETURNING o.id, o.channel_id, o.payload, o.attempts, o.created_at, c.kind, c.target`);
  return rows.map((r) => {
    let target: string | null = null;
    let targetError: string | undefined;
    try {
      target = decryptSecret(String(r.target));
    } catch (e) {
      targetError = (e as Error).message;
    }
    return {
      id: Number(r.id), channelId: Number(r.channel_id), kind: String(r.kind) as NotifyKind, target,
      notice: r.payload as unknown as Notice, attempts: Number(r.attempts), createdAt: toIso(r.created_at),
      ...(targetError === undefined ? {} : { targetError }),
    };
  });
}

/** Marks a claimed row delivered; false when the claim was lost (its lease ran out and another sender took it). */
export async function markNoticeSent(db: Db, claim: { id: number; attempts: number }): Promise<boolean> {
  const r = await db.query(q`UPDATE notify_outbox SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL
    WHERE id = ${claim.id} AND attempts = ${claim.attempts} AND status = 'sending'`);
  return r.rowCount > 0;
}

/**
 * Records a failed send: the row is due again after `retryInMs`, or `dead` once it has been failing
 * for `giveUpAfterMs` since it was queued. Returns the new status (null: the claim was lost).
 */
export async function markNoticeFailed(db: Db, claim: { id: number; attempts: number }, failure: { error: string; retryInMs: number; giveUpAfterMs: number }): Promise<"pending" | "dead" | null> {
  const status = await db.maybeOneFirst(q`UPDATE notify_outbox
       SET status = CASE WHEN now() - created_at >= make_interval(secs => ${failure.giveUpAfterMs / 1000}) THEN 'dead' ELSE 'pending' END,
           next_attempt_at = now() + make_interval(secs => ${failure.retryInMs / 1000}),
           lease_until = NULL, last_error = ${failure.error.slice(0, 1000)}
     WHERE id = ${claim.id} AND attempts = ${claim.attempts} AND status = 'sending'
     RETURNING status`);
  return status == null ? null : (String(status) as "pending" | "dead");
}

/** Gives a claimed row back unsent (its sender is stopping): due at once, the attempt not counted. */
export async function releaseNotice(db: Db, claim: { id: number; attempts: number }): Promise<void> {
  await db.query(q`UPDATE notify_outbox SET status = 'pending', attempts = attempts - 1, next_attempt_at = now(), lease_until = NULL
    WHERE id = ${claim.id} AND attempts = ${claim.attempts} AND status = 'sending'`);
}

/** Where one notice stands on each channel it was queued for. */
export interface NoticeDelivery {
  channelId: number;
  status: "pending" | "sending" | "sent" | "dead";
  attempts: number;
  lastError: string | null;
  /** Milliseconds until the next attempt (0 when due). */
  retryInMs: number;
}

export async function noticeDeliveries(db: Db, key: string): Promise<NoticeDelivery[]> {
  const rows = await db.any(q`SELECT channel_id, status, attempts, last_error,
      greatest(0, extract(epoch FROM next_attempt_at - now()) * 1000) AS retry_in_ms
    FROM notify_outbox WHERE notice_key = ${key} ORDER BY channel_id`);
  return rows.map((r) => ({
    channelId: Number(r.channel_id), status: String(r.status) as NoticeDelivery["status"], attempts: Number(r.attempts),
    lastError: r.last_error == null ? null : String(r.last_error), retryInMs: Math.round(Number(r.retry_in_ms)),
  }));
}

/** Drops notices sent more than 7 days ago and given up more than 30 days ago. */
export async function pruneNotices(db: Db): Promise<number> {
  return (await db.query(q`DELETE FROM notify_outbox
    WHERE (status = 'sent' AND sent_at < now() - interval '7 days')
       OR (status = 'dead' AND coalesce(last_attempt_at, created_at) < now() - interval '30 days')`)).rowCount;
}
