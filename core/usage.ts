/** Metered traffic of one app: what the router counts and `bandwidth_usage` stores per hour. */
export interface AppUsage {
  app: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

/** Adds `delta` to the app's entry in `into` (creating it), for counts kept between saves. */
export function accumulateUsage(into: Map<string, AppUsage>, delta: AppUsage): void {
  const cur = into.get(delta.app);
  if (cur === undefined) into.set(delta.app, { ...delta });
  else {
    cur.requests += delta.requests;
    cur.bytesIn += delta.bytesIn;
    cur.bytesOut += delta.bytesOut;
  }
}
