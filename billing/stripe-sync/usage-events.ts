/**
 * Ledger entries as Stripe meter events, and how far the reporting cursor may move (pure).
 *
 * Each ledger entry becomes one meter event in the plan's billing units, with the entry's key as the
 * event's identifier and the time the usage happened as its timestamp:
 * - build seconds / 60 → build minutes;
 * - bytes / 10^9 → GB of bandwidth;
 * - byte-hours / (10^9 × hours in the month the entry falls in) → GB-month of storage: an entry's share
 *   of a month's average, the unit deck rates storage in (core/billing countLedgerUnitsPerBillingUnit);
 * - domain-days / days in that month → custom domain-months.
 * Stripe sums the events of a meter over the subscription's period, as deck sums the ledger.
 */
import { createHash } from "node:crypto";
import { BILLING_METERS, countLedgerUnitsPerBillingUnit, METERS, parsePeriod, toMonthlyPeriod, type BillingMeter, type LedgerMeter } from "../../core/index.ts";
import type { UsageEvent } from "../stripe/index.ts";

const BILLING_METER_OF: ReadonlyMap<string, BillingMeter> = new Map(BILLING_METERS.map((m) => [METERS[m].ledger, m]));

/**
 * Stripe takes meter events up to 35 days old. An entry older than that, less an hour for clocks and
 * requests in flight, is not sent: Stripe would refuse it.
 */
export const STRIPE_USAGE_MAX_AGE_MS = 35 * 86_400_000 - 3_600_000;

/** Stripe's limit on an identifier's length. */
const IDENTIFIER_MAX = 100;

/** Ledger units as billing units, for an entry made at `at` (storage and domains depend on the month's length). */
export function toBillingUnits(meter: LedgerMeter, quantity: string | number | bigint, at: string): number {
  const billing = BILLING_METER_OF.get(meter);
  if (!billing) throw new RangeError(`unknown ledger meter ${JSON.stringify(meter)}`);
  const { startMs, endMs } = parsePeriod(toMonthlyPeriod(at));
  const per = countLedgerUnitsPerBillingUnit(billing, (endMs - startMs) / 1000);
  return (Number(quantity) * Number(per.d)) / Number(per.n);
}

/**
 * The meter event identifier of a ledger entry: its key, so the same usage is recognised if sent twice.
 * A key longer than Stripe takes is replaced by its SHA-256, equally stable.
 */
export function toUsageIdentifier(key: string): string {
  return key.length <= IDENTIFIER_MAX ? key : `sha256:${createHash("sha256").update(key).digest("hex")}`;
}

export interface LedgerEntryToReport {
  key: string;
  meter: string;
  quantity: string;
  at: string;
  customerId: string;
}

export type PlannedEvent = { kind: "send"; event: UsageEvent } | { kind: "too_old" };

/** What to do with one ledger entry of an org with a Stripe customer: send it, or not (too old for Stripe). */
export function planUsageEvent(entry: LedgerEntryToReport, now: Date): PlannedEvent {
  const atMs = Date.parse(entry.at);
  if (atMs < now.getTime() - STRIPE_USAGE_MAX_AGE_MS) return { kind: "too_old" };
  const meter = BILLING_METER_OF.get(entry.meter);
  if (!meter) throw new RangeError(`ledger entry ${entry.key}: unknown meter ${JSON.stringify(entry.meter)}`);
  return {
    kind: "send",
    event: {
      identifier: toUsageIdentifier(entry.key),
      meter,
      customerId: entry.customerId,
      value: toBillingUnits(entry.meter as LedgerMeter, entry.quantity, entry.at),
      timestamp: Math.floor(atMs / 1000),
    },
  };
}

/** How far reporting has come: see migration 032 (stripe_usage_cursor). */
export interface CursorState {
  throughId: number;
  horizonId: number;
  /** Milliseconds; null before the first round. */
  horizonAt: number | null;
}

export interface RoundProgress {
  now: number;
  /** How long an id must have been handed out before the cursor passes it without seeing its entry. */
  settleMs: number;
  /** The newest ledger id when the round began. */
  headId: number;
  /** Every id up to here was read this round (entries not yet committed excepted). */
  readThroughId: number;
  /** The first entry the round had to send and could not (Stripe failed), or null. */
  blockedAtId: number | null;
}

/**
 * Where the cursor goes after a round. Ledger ids are handed out in order but committed in any order
 * (and some are never used: a rolled-back or duplicate insert), so an id the round did not see may
 * still appear. The cursor passes such an id only once it was handed out `settleMs` ago or more: ids
 * up to the horizon, the newest id seen at least that long ago. It never passes an entry that still
 * has to be sent, nor what the round did not read.
 */
export function advanceCursor(c: CursorState, r: RoundProgress): CursorState {
  const settled = c.horizonAt !== null && c.horizonAt <= r.now - r.settleMs;
  const limit = Math.min(settled ? c.horizonId : c.throughId, r.readThroughId, r.blockedAtId === null ? Infinity : r.blockedAtId - 1);
  const renew = c.horizonAt === null || settled;
  return {
    throughId: Math.max(c.throughId, limit),
    horizonId: renew ? r.headId : c.horizonId,
    horizonAt: renew ? r.now : c.horizonAt,
  };
}
