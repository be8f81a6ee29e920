/**
 * Metered traffic of one app in one clock hour (UTC): what the router counts and `bandwidth_usage`
 * stores. Counts keep the hour they happened in, so a late save still lands in the right hour.
 */
export interface AppUsage {
  app: string;
  /** Start of the clock hour, ISO 8601 (`2026-11-26T15:00:00.000Z`). */
  hour: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Counts the router handed over for saving. `id` names the batch: saving the same batch twice adds it
 * once (see `saveUsageBatch`). Null for an empty batch.
 */
export interface UsageBatch {
  id: string | null;
  usage: AppUsage[];
}

export const HOUR_MS = 3_600_000;

/** The ISO start of the clock hour `ms` falls in. */
export function hourOf(ms: number): string {
  return new Date(Math.floor(ms / HOUR_MS) * HOUR_MS).toISOString();
}

/** Adds `delta` to its app's and hour's entry in `into` (creating it). */
export function accumulateUsage(into: Map<string, AppUsage>, delta: AppUsage): void {
  const key = `${delta.hour} ${delta.app}`;
  const cur = into.get(key);
  if (cur === undefined) into.set(key, { ...delta });
  else {
    cur.requests += delta.requests;
    cur.bytesIn += delta.bytesIn;
    cur.bytesOut += delta.bytesOut;
  }
}
