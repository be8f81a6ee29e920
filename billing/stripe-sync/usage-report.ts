/**
 * Sends the usage ledger to Stripe's meters, each entry once, in ledger id order.
 *
 * Which entries: those of orgs with a Stripe subscription, from the moment it was first made
 * (`stripe_org_sync.usage_from`). Usage before that is on no Stripe invoice, so it is never sent, even
 * once the org has a customer: deck's own invoice for that month shows it. Entries with nothing in
 * them (zero seconds, zero bytes) are not sent either.
 *
 * Each round reads the entries after the cursor that are not marked sent, sends them in batches
 * (at most `maxEvents` a round), and marks each with what Stripe made of it in the same transaction:
 * - accepted: done;
 * - rejected (Stripe refused the event itself, a 4xx): marked and logged, never sent again;
 * - failed (Stripe unreachable or failing): the round stops there and the next round sends it again.
 *   The identifier (the ledger key) lets Stripe recognise a resent event.
 * One deck server at a time reports (an advisory lock per batch); the others skip the round.
 */
import type { DatabasePool } from "slonik";
import {
  findNewestUsageId, listUsageToReport, loadUsageCursor, markUsageSent, saveUsageCursor, tryStripeJobLock, type UsageOutcome,
} from "../../store/queries/index.ts";
import type { BillingProvider, UsageEvent } from "../stripe/index.ts";
import { advanceCursor, planUsageEvent } from "./usage-events.ts";

export interface UsageRoundOptions {
  db: DatabasePool;
  provider: BillingProvider;
  now: Date;
  /** See `advanceCursor`: how long a ledger id may take to be committed. */
  settleMs: number;
  maxEvents: number;
  batchSize: number;
}

/** What one round did. */
export interface UsageRound {
  accepted: number;
  rejected: Array<{ identifier: string; message: string }>;
  /** Entries older than Stripe takes, not sent. */
  tooOld: number;
  /** Stripe could not take these now; the next round sends them. */
  failed: Array<{ identifier: string; message: string }>;
  /** Another deck server held the lock: this one did nothing. */
  skipped: boolean;
  /** The cursor after the round. */
  throughId: number;
}

export async function reportUsageRound(o: UsageRoundOptions): Promise<UsageRound> {
  const round: UsageRound = { accepted: 0, rejected: [], tooOld: 0, failed: [], skipped: false, throughId: 0 };
  const start = await o.db.transaction(async (tx) => {
    if (!(await tryStripeJobLock(tx, "usage"))) return null;
    return { cursor: await loadUsageCursor(tx), headId: await findNewestUsageId(tx) };
  });
  if (!start) return { ...round, skipped: true };
  const { cursor, headId } = start;
  round.throughId = cursor.throughId;

  let afterId = cursor.throughId;
  let readThroughId = cursor.throughId;
  let blockedAtId: number | null = null;
  let budget = o.maxEvents;
  while (budget > 0) {
    const limit = Math.min(o.batchSize, budget);
    const batch = await o.db.transaction(async (tx) => {
      if (!(await tryStripeJobLock(tx, "usage"))) return null;
      const rows = await listUsageToReport(tx, { afterId, throughId: headId, limit });
      const toSend: Array<{ usageId: number; event: UsageEvent }> = [];
      const marks: Array<{ usageId: number; outcome: UsageOutcome }> = [];
      for (const row of rows) {
        const planned = planUsageEvent(row, o.now);
        if (planned.kind === "send") toSend.push({ usageId: row.id, event: planned.event });
        else {
          marks.push({ usageId: row.id, outcome: "too_old" });
          round.tooOld += 1;
        }
      }
      const report = toSend.length > 0 ? await o.provider.reportUsage(toSend.map((s) => s.event)) : { accepted: [], rejected: [], failed: [] };
      const idOf = new Map(toSend.map((s) => [s.event.identifier, s.usageId]));
      for (const identifier of report.accepted) marks.push({ usageId: idOf.get(identifier)!, outcome: "accepted" });
      for (const r of report.rejected) marks.push({ usageId: idOf.get(r.identifier)!, outcome: "rejected" });
      await markUsageSent(tx, marks);
      round.accepted += report.accepted.length;
      round.rejected.push(...report.rejected.map((r) => ({ identifier: r.identifier, message: r.message })));
      round.failed.push(...report.failed);
      const failedIds = report.failed.map((f) => idOf.get(f.identifier)!);
      return { rows, firstFailed: failedIds.length > 0 ? Math.min(...failedIds) : null };
    });
    if (batch === null) return { ...round, skipped: true };
    if (batch.firstFailed !== null) {
      blockedAtId = batch.firstFailed;
      break;
    }
    if (batch.rows.length < limit) {
      readThroughId = headId;
      break;
    }
    afterId = readThroughId = batch.rows.at(-1)!.id;
    budget -= batch.rows.length;
  }

  const next = advanceCursor(
    { throughId: cursor.throughId, horizonId: cursor.horizonId, horizonAt: cursor.horizonAt === null ? null : Date.parse(cursor.horizonAt) },
    { now: o.now.getTime(), settleMs: o.settleMs, headId, readThroughId, blockedAtId },
  );
  const saved = await o.db.transaction(async (tx) => {
    if (!(await tryStripeJobLock(tx, "usage"))) return false;
    await saveUsageCursor(tx, { throughId: next.throughId, horizonId: next.horizonId, horizonAt: next.horizonAt === null ? null : new Date(next.horizonAt).toISOString() });
    return true;
  });
  return { ...round, skipped: !saved, throughId: saved ? next.throughId : cursor.throughId };
}
