import { collectUsage, makeEmptyUsage, mergeUsage } from "./ledger-usage.ts";
import { floorToSecond, parseInstant, parsePeriod } from "./period.ts";
import { splitByPlan } from "./plan-segments.ts";
import { toRational } from "./rational.ts";
import { buildInvoice, type RatedInvoice, type RatingInput } from "./rating.ts";

export interface Forecast {
  /** The instant the forecast is for, cut to the second and kept within the period. */
  now: string;
  elapsedSeconds: number;
  periodSeconds: number;
  /**
   * The period up to `now` rated as a stretch of its own: fees and allowances accrue with time
   * (half the month gives half the fee and half the allowance), usage is what the ledger has so far.
   */
  soFar: RatedInvoice;
  /**
   * The whole period if usage goes on at the same pace: each meter's (and app's) usage so far ×
   * periodSeconds / elapsedSeconds, the extra counted under the plan in force at `now`, which runs
   * to the end of the period (later changes already scheduled are not assumed).
   */
  forecast: RatedInvoice;
}

/** Cost so far and a linear end-of-period forecast, both shaped like an invoice. */
export function forecastPeriod(input: RatingInput, now: string): Forecast {
  const { startMs, endMs } = parsePeriod(input.period);
  const periodSeconds = (endMs - startMs) / 1000;
  const nowMs = Math.min(endMs, Math.max(startMs, floorToSecond(parseInstant(now, "forecast instant"))));
  const elapsedSeconds = (nowMs - startMs) / 1000;
  const keepIds = input.trace !== "count";

  const soFarSegments = nowMs > startMs ? splitByPlan({ catalogue: input.catalogue, planHistory: input.planHistory, fromMs: startMs, toMs: nowMs }) : [];
  const soFarUsage = soFarSegments.length
    ? collectUsage({ entries: input.entries, orgId: input.orgId, segments: soFarSegments, fromMs: startMs, toMs: nowMs, keepIds })
    : [];
  const soFar = buildInvoice({ input, segments: soFarSegments, usage: soFarUsage, periodSeconds });

  const known = input.planHistory.filter((c) => floorToSecond(parseInstant(c.from, `plan change to "${c.plan}"`)) <= nowMs);
  const history = known.length ? known : input.planHistory;
  const segments = splitByPlan({ catalogue: input.catalogue, planHistory: history, fromMs: startMs, toMs: endMs });
  const usage = segments.map(() => makeEmptyUsage(keepIds));
  // Every segment so far lies inside one forecast segment (the same plan from the same instant).
  for (const [i, seg] of soFarSegments.entries()) {
    const j = segments.findIndex((s) => s.fromMs <= seg.fromMs && seg.fromMs < s.toMs);
    for (const [m, u] of soFarUsage[i]!.entries()) mergeUsage(usage[j]![m]!, u, toRational(1n));
  }
  if (elapsedSeconds > 0 && elapsedSeconds < periodSeconds) {
    const rest = toRational(BigInt(periodSeconds - elapsedSeconds), BigInt(elapsedSeconds));
    const current = usage[usage.length - 1]!;
    for (const perSegment of soFarUsage) {
      for (const [m, u] of perSegment.entries()) mergeUsage(current[m]!, { apps: u.apps, ids: null, count: 0 }, rest);
    }
  }
  for (const perSegment of usage) for (const u of perSegment) u.ids?.sort();
  return {
    now: new Date(nowMs).toISOString(),
    elapsedSeconds,
    periodSeconds,
    soFar,
    forecast: buildInvoice({ input, segments, usage, periodSeconds }),
  };
}

