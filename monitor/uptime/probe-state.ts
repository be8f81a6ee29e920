import type { UptimeIncidentChange, UptimeProbeState } from "../../store/queries/uptime.ts";

/**
 * When an app counts as down or up again. One failed check is not an outage (a deploy's switch, a
 * dropped connection): an incident opens after CHECKS_TO_CHANGE failed checks in a row and ends after
 * as many good ones. The states:
 *
 *   up ──fail──► failing ──fail──► down (incident opens at the first failure)
 *    ▲             │ ok             │ ok
 *    │◄────────────┘                ▼
 *    └──────────ok──────────── recovering (incident ends at the first good check)
 *                                   │ fail ─► down
 */

export const CHECKS_TO_CHANGE = 2;

export type CheckResult = { ok: true; status: number } | { ok: false; cause: string };

export interface ProbeStep {
  /** The state after the check; null when it did not change. */
  next: UptimeProbeState | null;
  incident: UptimeIncidentChange | null;
}

export const UP: UptimeProbeState = { state: "up", streak: 0, since: null, cause: null };

const same: ProbeStep = { next: null, incident: null };

/** The state after one check made at `at` (ISO time), and the incident it opens or ends. */
export function stepProbeState(s: UptimeProbeState, check: CheckResult, at: string): ProbeStep {
  switch (s.state) {
    case "up":
    case "failing": {
      if (check.ok) return s.state === "up" ? same : { next: UP, incident: null };
      const streak = s.state === "failing" ? s.streak + 1 : 1;
      const since = s.state === "failing" && s.since !== null ? s.since : at;
      if (streak < CHECKS_TO_CHANGE) return { next: { state: "failing", streak, since, cause: check.cause }, incident: null };
      return { next: { state: "down", streak: 0, since, cause: check.cause }, incident: { kind: "open", startedAt: since, cause: check.cause } };
    }
    case "down":
    case "recovering": {
      // The incident keeps the cause it opened with (its row holds when it started).
      if (!check.ok) return s.state === "down" ? same : { next: { ...s, state: "down", streak: 0, since: null }, incident: null };
      const streak = s.state === "recovering" ? s.streak + 1 : 1;
      const since = s.state === "recovering" && s.since !== null ? s.since : at;
      if (streak < CHECKS_TO_CHANGE) return { next: { state: "recovering", streak, since, cause: s.cause }, incident: null };
      return { next: UP, incident: { kind: "close", endedAt: since } };
    }
  }
}
