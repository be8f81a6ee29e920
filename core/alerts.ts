/**
 * Alert rules, no I/O: how users write them (`http_5xx>5% for 5m`), what a rule observes in an app's
 * samples, and the state machine of one rule of one app, from which the notices follow.
 *
 *   inactive ──condition──► pending ──held for `for`──► firing ──below threshold × 0.9──► resolved
 *      ▲                      │                                                           │
 *      └───condition gone─────┘            ◄──────────────condition again─────────────────┘
 *
 * A rule that fires again less than 5 minutes after it resolved joins the same incident (no new
 * firing notice); while a rule keeps firing, a reminder goes out at most every 4 hours.
 */
import { sumSamples, toPoint, type MetricSample } from "./metrics.ts";

export type AlertKind = "down" | "crash_loop" | "http_5xx" | "p95" | "memory";
export const ALERT_KINDS: readonly AlertKind[] = ["down", "crash_loop", "http_5xx", "p95", "memory"];

/** Every app has these unless removed: `down` and `crash_loop` with their defaults. */
export const DEFAULT_ALERT_KINDS: readonly AlertKind[] = ["down", "crash_loop"];

export interface AlertRuleSpec {
  kind: AlertKind;
  /**
   * down: unused (0); crash_loop: restarts; http_5xx: percent of requests; p95: milliseconds;
   * memory: percent of the memory limit.
   */
  threshold: number;
  /** How long the condition must hold before the rule fires. */
  forSeconds: number;
  /** crash_loop: the window restarts are counted in. */
  windowSeconds?: number;
  /** http_5xx and p95: periods with fewer requests say nothing. */
  minRequests?: number;
}

export const CRASH_LOOP_DEFAULT = { threshold: 3, windowSeconds: 300 };
export const DEFAULT_MIN_REQUESTS = 20;
/** http_5xx and p95 look at the last minute of samples; memory at the latest reading in it. */
export const VALUE_WINDOW_SECONDS = 60;
/** A rule resolves only once its value is below threshold × this. */
export const HYSTERESIS = 0.9;
export const FLAP_GROUP_MS = 5 * 60_000;
export const REMINDER_EVERY_MS = 4 * 3_600_000;
/** A rule that fires this soon after a release went live may roll the app back (alerts:rollback). */
export const ROLLBACK_WINDOW_MS = 10 * 60_000;

export const RULE_FORMS = "down, crash_loop, crash_loop>=5 in 10m, http_5xx>5% for 5m, p95>800ms for 10m, memory>90% for 5m";

export type ParsedRule = { ok: true; rule: AlertRuleSpec } | { ok: false; message: string };

const DURATION = /^(\d{1,6})(s|m|h|d)$/;

/** "30s", "5m", "2h", "1d" → seconds; null when it is not one. */
export function parseAlertDuration(raw: string): number | null {
  const m = DURATION.exec(raw.trim());
  if (!m) return null;
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as "s" | "m" | "h" | "d"];
}

/** 300 → "5m", 90 → "90s", 7200 → "2h". */
export function formatAlertDuration(seconds: number): string {
  if (seconds > 0 && seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds > 0 && seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

const fail = (text: string, why: string): ParsedRule => ({
  ok: false, message: `"${text.slice(0, 60)}" is not an alert rule (${why}); rules look like: ${RULE_FORMS}`,
});

/**
 * A rule as users type it, the words joined by spaces: `http_5xx>5% for 5m`, `p95 > 800ms for 10m`,
 * `memory>90% for 5m`, `crash_loop`, `crash_loop>=5 in 10m`, `down`; http_5xx and p95 take
 * `min N` (requests a minute below which a minute says nothing; default 20).
 */
export function parseAlertRule(text: string): ParsedRule {
  const src = text.trim().replace(/\s+/g, " ");
  const squeezed = src.replace(/\s*(>=|>)\s*/g, "$1");
  const words = squeezed.split(" ").filter(Boolean);
  const head = words.shift() ?? "";
  if (head === "down") return words.length ? fail(src, "down takes nothing after it") : { ok: true, rule: { kind: "down", threshold: 0, forSeconds: 0 } };
  if (head === "crash_loop" || head.startsWith("crash_loop>")) {
    let threshold = CRASH_LOOP_DEFAULT.threshold;
    let windowSeconds = CRASH_LOOP_DEFAULT.windowSeconds;
    if (head !== "crash_loop") {
      const m = /^crash_loop>=?(\d{1,4})$/.exec(head);
      if (!m || Number(m[1]) < 1) return fail(src, "crash_loop counts restarts: crash_loop>=5 in 10m");
      threshold = Number(m[1]) + (head.startsWith("crash_loop>=") ? 0 : 1);
      if (words.length) {
        const w = words[0] === "in" && words.length === 2 ? parseAlertDuration(words[1]!) : null;
        if (w === null || w < 10 || w > 3600) return fail(src, "the window is written `in 10m`, from 10s to 1h");
        windowSeconds = w;
        words.length = 0;
      }
    }
    if (words.length) return fail(src, "crash_loop takes `>=N in D` or nothing");
    return { ok: true, rule: { kind: "crash_loop", threshold, forSeconds: 0, windowSeconds } };
  }
  const m = /^(http_5xx|p95|memory)>(\d{1,7}(?:\.\d{1,3})?)(%|ms|s)?$/.exec(head);
  if (!m) return fail(src, `unknown rule "${head.slice(0, 30)}"`);
  const kind = m[1] as "http_5xx" | "p95" | "memory";
  let threshold = Number(m[2]);
  const unit = m[3];
  if (kind === "p95") {
    if (unit !== "ms" && unit !== "s") return fail(src, "p95 is a latency: p95>800ms or p95>1.5s");
    if (unit === "s") threshold *= 1000;
    if (threshold <= 0 || threshold > 600_000) return fail(src, "p95 is from 1ms to 600s");
  } else {
    if (unit !== "%") return fail(src, `${kind} is a percentage: ${kind}>${kind === "memory" ? 90 : 5}%`);
    if (threshold <= 0 || threshold >= 100) return fail(src, "a percentage above 0 and below 100");
  }
  let forSeconds = 300;
  let minRequests: number | undefined;
  while (words.length) {
    const [w, v] = [words.shift()!, words.shift()];
    if (w === "for" && v !== undefined) {
      const d = parseAlertDuration(v);
      if (d === null || d > 3600) return fail(src, "`for` takes a duration from 0s to 1h: 30s, 5m, 1h");
      forSeconds = d;
    } else if (w === "min" && v !== undefined && kind !== "memory" && /^\d{1,6}$/.test(v)) minRequests = Number(v);
    else return fail(src, `unexpected "${w.slice(0, 20)}"`);
  }
  const rule: AlertRuleSpec = { kind, threshold, forSeconds };
  if (kind !== "memory") rule.minRequests = minRequests ?? DEFAULT_MIN_REQUESTS;
  return { ok: true, rule };
}

/** The rule as users write it; parseAlertRule(formatAlertRule(r)) gives r back. */
export function formatAlertRule(r: AlertRuleSpec): string {
  const forPart = ` for ${formatAlertDuration(r.forSeconds)}`;
  const minPart = r.minRequests !== undefined && r.minRequests !== DEFAULT_MIN_REQUESTS ? ` min ${r.minRequests}` : "";
  switch (r.kind) {
    case "down":
      return "down";
    case "crash_loop":
      return r.threshold === CRASH_LOOP_DEFAULT.threshold && (r.windowSeconds ?? 300) === CRASH_LOOP_DEFAULT.windowSeconds
        ? "crash_loop"
        : `crash_loop>=${r.threshold} in ${formatAlertDuration(r.windowSeconds ?? 300)}`;
    case "http_5xx":
      return `http_5xx>${r.threshold}%${forPart}${minPart}`;
    case "p95":
      return `p95>${r.threshold}ms${forPart}${minPart}`;
    case "memory":
      return `memory>${r.threshold}%${forPart}`;
  }
}

/** The default rule of a kind (down, crash_loop). */
export function defaultAlertRule(kind: "down" | "crash_loop"): AlertRuleSpec {
  return kind === "down" ? { kind, threshold: 0, forSeconds: 0 } : { kind, threshold: CRASH_LOOP_DEFAULT.threshold, forSeconds: 0, windowSeconds: CRASH_LOOP_DEFAULT.windowSeconds };
}

/** How far back a rule reads samples. */
export function alertWindowSeconds(r: AlertRuleSpec): number {
  return r.kind === "crash_loop" ? (r.windowSeconds ?? CRASH_LOOP_DEFAULT.windowSeconds) : VALUE_WINDOW_SECONDS;
}

/** What a rule saw: a number compared with its threshold (null: nothing to judge by) and the same in words. */
export interface AlertObservation {
  value: number | null;
  words: string;
}

/** The app's own uptime, for `down`: an open incident, or none. */
export interface DownSignal {
  down: boolean;
  cause?: string;
  since?: string;
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits });
const mib = (b: number) => `${fmt(b / 1048576)} MiB`;

/**
 * What `rule` sees at `at` in the app's samples (the whole-app series; those older than the rule's
 * window are left out) and, for `down`, in the app's uptime.
 */
export function observeAlert(rule: AlertRuleSpec, samples: readonly MetricSample[], at: number, down: DownSignal): AlertObservation {
  if (rule.kind === "down") {
    return down.down ? { value: 1, words: `down${down.cause ? ` (${down.cause})` : ""}${down.since ? ` since ${down.since.slice(0, 19).replace("T", " ")} UTC` : ""}` } : { value: 0, words: "up" };
  }
  const window = alertWindowSeconds(rule);
  const recent = samples.filter((s) => s.at >= at - window * 1000 && s.at < at);
  const label = formatAlertDuration(window);
  if (recent.length === 0) return { value: null, words: `no samples in the last ${label}` };
  const sum = sumSamples(recent, at - window * 1000, "");
  const point = toPoint(sum);
  switch (rule.kind) {
    case "crash_loop":
      return { value: sum.restarts, words: `${sum.restarts} restart${sum.restarts === 1 ? "" : "s"} in ${label}` };
    case "http_5xx": {
      if (sum.requests < (rule.minRequests ?? DEFAULT_MIN_REQUESTS)) return { value: null, words: `${fmt(sum.requests)} requests in ${label}, too few to judge` };
      const pct = (sum.status5xx * 100) / sum.requests;
      return { value: pct, words: `${fmt(pct, 1)}% of ${fmt(sum.requests)} requests answered 5xx in ${label}` };
    }
    case "p95": {
      if (sum.requests < (rule.minRequests ?? DEFAULT_MIN_REQUESTS) || point.p95Ms === null) return { value: null, words: `${fmt(sum.requests)} requests in ${label}, too few to judge` };
      return { value: point.p95Ms, words: `p95 ${fmt(point.p95Ms)} ms over ${fmt(sum.requests)} requests in ${label}` };
    }
    case "memory": {
      // The latest reading: memory let go ends the alert at once (its `for` is the hold), where a
      // highest-in-the-window value would keep it firing a minute after the app recovered.
      const last = recent.filter((s) => s.rssBytes !== null).reduce<MetricSample | null>((a, s) => (a === null || s.at >= a.at ? s : a), null);
      if (!last || last.rssBytes === null || !last.memoryLimitBytes) return { value: null, words: `no memory limit or no memory reading in ${label}` };
      const pct = (last.rssBytes * 100) / last.memoryLimitBytes;
      return { value: pct, words: `${fmt(pct, 1)}% of its ${mib(last.memoryLimitBytes)} memory limit (${mib(last.rssBytes)} RSS)` };
    }
  }
}

/** Whether the value breaks the rule. */
export function alertCondition(rule: AlertRuleSpec, value: number | null): boolean {
  if (value === null) return false;
  if (rule.kind === "down") return value >= 1;
  if (rule.kind === "crash_loop") return value >= rule.threshold;
  return value > rule.threshold;
}

/** Whether a firing rule may resolve: well below its threshold (hysteresis), or for `down`, up again. */
export function alertClear(rule: AlertRuleSpec, value: number | null): boolean {
  if (value === null) return false;
  if (rule.kind === "down") return value < 1;
  return value < rule.threshold * HYSTERESIS;
}

export type AlertStatus = "inactive" | "pending" | "firing" | "resolved";

/** One rule of one app, as stored between rounds (times in ms since the epoch). */
export interface AlertState {
  status: AlertStatus;
  /** When the condition started to hold (pending or firing). */
  pendingSince: number | null;
  /** When the current (or last) incident started firing; repeats grouped into it keep it. */
  firedAt: number | null;
  resolvedAt: number | null;
  lastNotifiedAt: number | null;
  /** The last notice queued in this incident (a notice held by a silence is not queued). */
  notified: "firing" | "resolved" | null;
  /** Notices queued in this incident: makes each one's key. */
  noticeCount: number;
  value: number | null;
  words: string;
}

export const INITIAL_ALERT_STATE: AlertState = {
  status: "inactive", pendingSince: null, firedAt: null, resolvedAt: null, lastNotifiedAt: null, notified: null, noticeCount: 0, value: null, words: "",
};

/** What happened to the rule in one step. */
export type AlertTransition = "none" | "pending" | "fired" | "regrouped" | "resolved" | "cleared";

/** Moves the rule's state on by one observation at `at`. */
export function stepAlert(rule: AlertRuleSpec, prev: AlertState, obs: AlertObservation, at: number): { state: AlertState; transition: AlertTransition } {
  const s: AlertState = { ...prev, value: obs.value, words: obs.words };
  const holds = alertCondition(rule, obs.value);
  switch (prev.status) {
    case "inactive":
    case "resolved":
    case "pending": {
      if (!holds) {
        if (prev.status !== "pending") return { state: s, transition: "none" };
        return { state: { ...s, status: prev.resolvedAt !== null && prev.firedAt !== null ? "resolved" : "inactive", pendingSince: null }, transition: "cleared" };
      }
      const since = prev.status === "pending" ? prev.pendingSince ?? at : at;
      if (at - since < rule.forSeconds * 1000) return { state: { ...s, status: "pending", pendingSince: since }, transition: prev.status === "pending" ? "none" : "pending" };
      // Fires: into the last incident when it resolved less than FLAP_GROUP_MS before the condition came back.
      if (prev.firedAt !== null && prev.resolvedAt !== null && since - prev.resolvedAt < FLAP_GROUP_MS) {
        return { state: { ...s, status: "firing", pendingSince: since }, transition: "regrouped" };
      }
      return { state: { ...s, status: "firing", pendingSince: since, firedAt: at, resolvedAt: null, notified: null, noticeCount: 0, lastNotifiedAt: null }, transition: "fired" };
    }
    case "firing":
      if (alertClear(rule, obs.value)) return { state: { ...s, status: "resolved", pendingSince: null, resolvedAt: at }, transition: "resolved" };
      return { state: s, transition: "none" };
  }
}

export type NoticeKind = "firing" | "reminder" | "resolved";

/**
 * The notice the state calls for now, if any. Silenced, none (the state keeps what was not said, so a
 * rule still firing when the silence ends is announced then).
 */
export function noticeDue(state: AlertState, at: number, silenced: boolean): NoticeKind | null {
  if (silenced) return null;
  if (state.status === "firing") {
    if (state.notified === null) return "firing";
    if (state.lastNotifiedAt !== null && at - state.lastNotifiedAt >= REMINDER_EVERY_MS) return "reminder";
    return null;
  }
  if (state.status === "resolved" && state.notified === "firing") return "resolved";
  return null;
}

/** The state once `kind` was queued at `at`. */
export function noticeSent(state: AlertState, kind: NoticeKind, at: number): AlertState {
  return { ...state, notified: kind === "resolved" ? "resolved" : "firing", lastNotifiedAt: at, noticeCount: state.noticeCount + 1 };
}

/**
 * The notice's key: the first firing and the first resolution of an incident are
 * `alert:APP:RULE:FIREDAT:firing|resolved`; later ones (reminders, resolutions after a regrouped
 * repeat) add their number, so each is sent once.
 */
export function alertNoticeKey(app: string, ruleId: string, state: AlertState, kind: NoticeKind): string {
  const status = kind === "resolved" ? "resolved" : "firing";
  const base = `alert:${app}:${ruleId}:${state.firedAt ?? 0}:${status}`;
  return state.noticeCount >= 2 || kind === "reminder" ? `${base}:${state.noticeCount + 1}` : base;
}

/** One rule of an app in effect: a stored rule (its id) or a default (its kind for an id). */
export interface AppAlertRule {
  id: string;
  spec: AlertRuleSpec;
  isDefault: boolean;
}

/** The app's rules in effect: the defaults it has not removed or replaced, then its own, oldest first. */
export function appAlertRules(stored: readonly { id: number; spec: AlertRuleSpec }[], defaultsRemoved: readonly string[]): AppAlertRule[] {
  const defaults = (DEFAULT_ALERT_KINDS as readonly ("down" | "crash_loop")[])
    .filter((k) => !defaultsRemoved.includes(k))
    .map((k) => ({ id: k, spec: defaultAlertRule(k), isDefault: true }));
  return [...defaults, ...stored.map((r) => ({ id: String(r.id), spec: r.spec, isDefault: false }))];
}
