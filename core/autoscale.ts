/**
 * Autoscaling rules, no I/O: whether a process type of an app should run more processes, fewer, or as
 * many as now, from its settings (ps:autoscale), its recent samples and what happened before. The
 * controller (monitor/autoscale) feeds it every round and carries out what it decides.
 *
 * - Out: a target exceeded over the last minute (p95 above it, requests/s per process above it, CPU
 *   per process above it) in EXCEEDED_ROUNDS consecutive rounds. One step: current + 1, or as many as
 *   the worst target asks for (ceil(current × observed / target)), at most MAX_SCALE_OUT_STEP more and
 *   never past max. A p95 measured on fewer than MIN_P95_REQUESTS requests does not count.
 * - In: by one, when every target stayed below SCALE_IN_SHARE of itself in each minute of the last
 *   SCALE_IN_WINDOW_MS, and nothing changed the processes for SCALE_IN_COOLDOWN_MS.
 * - No scale-out within SCALE_OUT_COOLDOWN_MS of the last one: its new processes get a minute of
 *   traffic before they are judged.
 * - A count outside min..max (a user's ps:scale, settings just changed) goes to the nearest bound.
 */
import { quantileMs, sumSamples, type MetricSample } from "./metrics.ts";

/** The most processes of one type, as for ps:scale. */
export const AUTOSCALE_MAX_PROCESSES = 50;
/** Scale-out judges the last minute. */
export const OBSERVE_WINDOW_MS = 60_000;
/** Rounds in a row a target must be exceeded before a scale-out. */
export const EXCEEDED_ROUNDS = 2;
/** A p95 over fewer requests than this (in the minute) is noise, not slowness. */
export const MIN_P95_REQUESTS = 20;
/** At most this many processes more per decision. */
export const MAX_SCALE_OUT_STEP = 4;
/** Scale-in needs every target below this share of itself … */
export const SCALE_IN_SHARE = 0.5;
/** … in each minute of this long. */
export const SCALE_IN_WINDOW_MS = 5 * 60_000;
/** No scale-in within this long of any change of the app's processes (a scale, a deploy). */
export const SCALE_IN_COOLDOWN_MS = 5 * 60_000;
/** No scale-out within this long of the last scale-out. */
export const SCALE_OUT_COOLDOWN_MS = 60_000;
/** After a failed scale the next try waits this long, doubling with each failure in a row, up to FAILURE_BACKOFF_MAX_MS. */
export const FAILURE_BACKOFF_MS = 60_000;
export const FAILURE_BACKOFF_MAX_MS = 30 * 60_000;
/** Failed scales in a row after which deck stops trying until the app is deployed again or its autoscaling is set again. */
export const MAX_FAILURES_IN_A_ROW = 5;

/** Process types the router sends requests to: the only ones a p95 or requests/s target means something for. */
export const WEB_TYPES: readonly string[] = ["web"];

export function servesWebTraffic(type: string): boolean {
  return WEB_TYPES.includes(type);
}

/** Processes of `type` a formation runs (web runs one unless told otherwise, as deploys do). */
export function processCount(formation: Record<string, number>, type: string): number {
  return formation[type] ?? (type === "web" ? 1 : 0);
}

/** What a process type is scaled on; null = not a target. */
export interface AutoscaleTargets {
  /** The app's 95th percentile response time, in milliseconds. */
  p95Ms: number | null;
  /** CPU per process, in percent of one core. */
  cpuPercent: number | null;
  /** Requests per second per process. */
  rps: number | null;
}

export interface AutoscaleSettings extends AutoscaleTargets {
  type: string;
  min: number;
  max: number;
}

/** What the controller knows of a process type at the start of a round. */
export interface AutoscaleHistory {
  /** Processes of the type the app runs now (its formation). */
  current: number;
  /** The app's whole-app samples (the router's view of its traffic), at least SCALE_IN_WINDOW_MS of them. */
  traffic: readonly MetricSample[];
  /** The samples of each process of the type (their CPU), over the same time. */
  processes: readonly MetricSample[];
  /** Rounds in a row before this one that saw a target exceeded. */
  exceededRounds: number;
  /** When the app's processes last changed (a scale by deck or a user, a deploy going live); null = not known. */
  lastChangeAt: number | null;
  /** When deck last scaled this type out; null = never. */
  lastScaleOutAt: number | null;
  /** deck's scales of this type that failed in a row since the last that worked, the last deploy and the last change of its settings. */
  failuresInARow?: number;
  /** When the last of those failed. */
  lastFailureAt?: number | null;
}

/** How long after `failures` failed scales in a row the next may be tried. */
export function failureBackoffMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(FAILURE_BACKOFF_MAX_MS, FAILURE_BACKOFF_MS * 2 ** (failures - 1));
}

export type ScaleDecision =
  | { kind: "out" | "in"; from: number; to: number; reason: string }
  | { kind: "hold"; reason: string };

export interface AutoscaleStep {
  decision: ScaleDecision;
  /** What the next round gets as `exceededRounds`. */
  exceededRounds: number;
}

/** One window of a process type, as the targets measure it. */
export interface AutoscaleObservation {
  /** Requests the router counted (all of the app's). */
  requests: number;
  p95Ms: number | null;
  /** Requests per second per process of the type. */
  rpsPerProcess: number;
  /** Average CPU per process of the type, percent of one core; null when the runtime measured none. */
  cpuPercent: number | null;
}

/** The targets over samples in [fromMs, toMs); null when no sample of the app's traffic falls in it. */
export function observeTargets(history: Pick<AutoscaleHistory, "current" | "traffic" | "processes">, fromMs: number, toMs: number): AutoscaleObservation | null {
  const inside = (s: MetricSample) => s.at >= fromMs && s.at < toMs;
  const traffic = history.traffic.filter(inside);
  if (traffic.length === 0) return null;
  const sum = sumSamples(traffic, fromMs, "");
  let cpuSeconds = 0;
  let processSeconds = 0;
  for (const s of history.processes) {
    if (!inside(s) || s.cpuSeconds === null) continue;
    cpuSeconds += s.cpuSeconds;
    processSeconds += s.seconds;
  }
  return {
    requests: sum.requests,
    p95Ms: quantileMs(sum.latency, 0.95),
    rpsPerProcess: sum.seconds > 0 ? sum.requests / sum.seconds / Math.max(1, history.current) : 0,
    cpuPercent: processSeconds > 0 ? (cpuSeconds / processSeconds) * 100 : null,
  };
}

/** A target that was exceeded: by how much, and in words. */
interface Breach {
  ratio: number;
  words: string;
}

const round1 = (n: number) => (Math.round(n * 10) / 10).toString();

/** The targets the observation exceeds (a p95 on too few requests does not). */
function breaches(t: AutoscaleTargets, o: AutoscaleObservation): Breach[] {
  const out: Breach[] = [];
  if (t.p95Ms !== null && o.p95Ms !== null && o.requests >= MIN_P95_REQUESTS && o.p95Ms > t.p95Ms) {
    out.push({ ratio: o.p95Ms / t.p95Ms, words: `p95 ${Math.round(o.p95Ms)}ms above ${t.p95Ms}ms` });
  }
  if (t.rps !== null && o.rpsPerProcess > t.rps) out.push({ ratio: o.rpsPerProcess / t.rps, words: `${round1(o.rpsPerProcess)} requests/s per process above ${t.rps}` });
  if (t.cpuPercent !== null && o.cpuPercent !== null && o.cpuPercent > t.cpuPercent) {
    out.push({ ratio: o.cpuPercent / t.cpuPercent, words: `CPU ${Math.round(o.cpuPercent)}% per process above ${t.cpuPercent}%` });
  }
  return out;
}

/** Whether every target is below SCALE_IN_SHARE of itself (a p95 on too few requests is quiet; CPU not measured is not known). */
function wellBelow(t: AutoscaleTargets, o: AutoscaleObservation): boolean {
  if (t.p95Ms !== null && o.requests >= MIN_P95_REQUESTS && (o.p95Ms === null || o.p95Ms >= t.p95Ms * SCALE_IN_SHARE)) return false;
  if (t.rps !== null && o.rpsPerProcess >= t.rps * SCALE_IN_SHARE) return false;
  if (t.cpuPercent !== null && (o.cpuPercent === null || o.cpuPercent >= t.cpuPercent * SCALE_IN_SHARE)) return false;
  return true;
}

/** The targets in words, as `ps:autoscale` prints them: `p95 300ms, cpu 70%, rps 50`. */
export function describeTargets(t: AutoscaleTargets): string {
  const parts: string[] = [];
  if (t.p95Ms !== null) parts.push(`p95 ${t.p95Ms}ms`);
  if (t.cpuPercent !== null) parts.push(`cpu ${t.cpuPercent}%`);
  if (t.rps !== null) parts.push(`rps ${t.rps}`);
  return parts.join(", ");
}

const hold = (reason: string, exceededRounds = 0): AutoscaleStep => ({ decision: { kind: "hold", reason }, exceededRounds });

/** What to do with the process type at `now`: scale out, in, or hold (with why, in words). */
export function decideScale(settings: AutoscaleSettings, history: AutoscaleHistory, now: number): AutoscaleStep {
  const { current } = history;
  const { min, max } = settings;
  // An app whose scales keep failing (it crashes on start, the host is full) is not tried every round.
  const failures = history.failuresInARow ?? 0;
  if (failures >= MAX_FAILURES_IN_A_ROW) {
    return hold(`the last ${failures} scales failed; deck tries again after the next deploy or ps:autoscale`, history.exceededRounds);
  }
  if (failures > 0 && history.lastFailureAt != null && now - history.lastFailureAt < failureBackoffMs(failures)) {
    const wait = Math.ceil((failureBackoffMs(failures) - (now - history.lastFailureAt)) / 1000);
    return hold(`the last scale failed; trying again in ${wait}s`, history.exceededRounds);
  }
  if (current < min) return { decision: { kind: "out", from: current, to: min, reason: `${current} is below the minimum of ${min}` }, exceededRounds: 0 };
  if (current > max) return { decision: { kind: "in", from: current, to: max, reason: `${current} is above the maximum of ${max}` }, exceededRounds: 0 };

  const last = observeTargets(history, now - OBSERVE_WINDOW_MS, now);
  if (!last) return hold("no metrics in the last minute");
  const exceeded = breaches(settings, last);
  if (exceeded.length > 0) {
    const rounds = history.exceededRounds + 1;
    const words = exceeded.map((b) => b.words).join(", ");
    if (rounds < EXCEEDED_ROUNDS) return hold(`${words} (round ${rounds} of ${EXCEEDED_ROUNDS})`, rounds);
    if (current >= max) return hold(`${words}, but already at the maximum of ${max}`, rounds);
    if (history.lastScaleOutAt !== null && now - history.lastScaleOutAt < SCALE_OUT_COOLDOWN_MS) {
      return hold(`${words}, but scaled out less than ${SCALE_OUT_COOLDOWN_MS / 1000}s ago`, rounds);
    }
    const worst = Math.max(...exceeded.map((b) => b.ratio));
    const to = Math.min(max, current + MAX_SCALE_OUT_STEP, Math.max(current + 1, Math.ceil(current * worst)));
    return { decision: { kind: "out", from: current, to, reason: `${words} over the last minute` }, exceededRounds: 0 };
  }

  if (current <= min) return hold(`within targets, at the minimum of ${min}`);
  if (history.lastChangeAt !== null && now - history.lastChangeAt < SCALE_IN_COOLDOWN_MS) {
    return hold(`within targets; processes changed less than ${SCALE_IN_COOLDOWN_MS / 60_000} minutes ago`);
  }
  for (let from = now - SCALE_IN_WINDOW_MS; from < now; from += OBSERVE_WINDOW_MS) {
    const o = observeTargets(history, from, from + OBSERVE_WINDOW_MS);
    if (!o || !wellBelow(settings, o)) return hold("within targets");
  }
  const minutes = SCALE_IN_WINDOW_MS / 60_000;
  return {
    decision: { kind: "in", from: current, to: current - 1, reason: `every target below ${SCALE_IN_SHARE * 100}% of itself for ${minutes} minutes (${describeTargets(settings)})` },
    exceededRounds: 0,
  };
}

// ---------- settings as users type them ----------

export type AutoscaleInput = { ok: true; settings: AutoscaleSettings } | { ok: false; message: string };

const TYPE_RE = /^[a-z][a-z0-9_-]{0,30}$/;

/** Checks settings from the API or ps:autoscale: bounds, at least one target, web targets on a web type. */
export function checkAutoscaleSettings(s: AutoscaleSettings): AutoscaleInput {
  if (!TYPE_RE.test(s.type)) return { ok: false, message: `"${s.type.slice(0, 40)}" is not a process type (like web or worker)` };
  if (!Number.isInteger(s.min) || s.min < 1) return { ok: false, message: `--min must be a whole number of at least 1 (scaling to zero is not supported yet)` };
  if (!Number.isInteger(s.max) || s.max > AUTOSCALE_MAX_PROCESSES) return { ok: false, message: `--max must be a whole number of at most ${AUTOSCALE_MAX_PROCESSES}` };
  if (s.max < s.min) return { ok: false, message: `--max (${s.max}) must be at least --min (${s.min})` };
  if (s.p95Ms === null && s.cpuPercent === null && s.rps === null) return { ok: false, message: "give at least one target: --p95 300ms, --cpu 70% or --rps 50" };
  if (s.p95Ms !== null && !(Number.isInteger(s.p95Ms) && s.p95Ms >= 1 && s.p95Ms <= 10_000)) return { ok: false, message: "the p95 target must be from 1ms to 10s" };
  if (s.cpuPercent !== null && !(s.cpuPercent > 0 && s.cpuPercent <= 100 * 64)) return { ok: false, message: "the CPU target must be a percent of one core above 0 (70%, or 150% for one and a half cores)" };
  if (s.rps !== null && !(s.rps > 0 && s.rps <= 1_000_000)) return { ok: false, message: "the requests/s target must be above 0" };
  if ((s.p95Ms !== null || s.rps !== null) && !servesWebTraffic(s.type)) {
    return { ok: false, message: `${s.type} processes get no web requests: --p95 and --rps need a web type (${WEB_TYPES.join(", ")}); scale ${s.type} on --cpu` };
  }
  return { ok: true, settings: s };
}

/** `300ms`, `1s`, `1.5s`, `300` (milliseconds) → milliseconds; null when it is none of those. */
export function parseP95Target(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * (m[2] === "s" ? 1000 : 1));
}

/** `70%` or `70` → 70; null otherwise. */
export function parsePercentTarget(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(raw.trim());
  return m ? Number(m[1]) : null;
}

/** `50` or `12.5` requests per second → the number; null otherwise. */
export function parseRateTarget(raw: string): number | null {
  const m = /^(\d+(?:\.\d+)?)$/.exec(raw.trim());
  return m ? Number(m[1]) : null;
}
