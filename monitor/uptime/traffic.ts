/**
 * Passive availability: what the app's real users got, from the router's counts in the samples. When
 * most requests of the last minute were answered 5xx, deck opens a 'traffic' incident (even while the
 * health check path still answers: a broken page behind a healthy check); it ends once errors are rare
 * again, or after five quiet minutes (no traffic: no evidence either way).
 */
import type { UptimeIncidentChange } from "../../store/queries/uptime.ts";

/** At least this many requests in the last minute, and at least this share of them 5xx, open an incident. */
export const TRAFFIC_MIN_REQUESTS = 10;
export const TRAFFIC_OPEN_SHARE = 0.5;
/** Below this share (with traffic) the incident ends: hysteresis, so an app near the line does not flap. */
export const TRAFFIC_CLOSE_SHARE = 0.1;

export interface TrafficWindow {
  /** The last minute. */
  requests: number;
  failed: number;
  /** Requests in the last five minutes. */
  recentRequests: number;
}

/** What the last minute of traffic means for an app whose traffic incident is open (or not). */
export function judgeTraffic(w: TrafficWindow, open: boolean, at: string): UptimeIncidentChange | null {
  if (!open) {
    if (w.requests < TRAFFIC_MIN_REQUESTS || w.failed < w.requests * TRAFFIC_OPEN_SHARE) return null;
    return { kind: "open", startedAt: at, cause: `${w.failed} of ${w.requests} requests in a minute answered 5xx` };
  }
  if (w.requests > 0 ? w.failed < w.requests * TRAFFIC_CLOSE_SHARE : w.recentRequests === 0) return { kind: "close", endedAt: at };
  return null;
}
