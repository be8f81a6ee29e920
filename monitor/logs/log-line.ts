/**
 * Lines of an app's log, as data. Two kinds of file hold them:
 *
 * - the app's log (`DATA_DIR/logs/APP.log`), one line per entry written by the process supervisor and by
 *   deck: `2026-01-05T10:00:00.123Z app[web.1]: text` (the app's output), `… deck[web.1]: …` (the
 *   supervisor about that process), `… deck[build]: …` and `… deck[deploy]: …` (pushes and deploys);
 * - the router's access log (`DATA_DIR/logs/access.log`), one JSON object per request of every app
 *   (router/access-log.ts), of which an app sees only those whose `app` is its own name.
 *
 * Parsing and filtering are pure; reading the files is in log-window.ts.
 */

export type LogSource = "app" | "deck" | "router";
export const LOG_SOURCES: readonly LogSource[] = ["app", "deck", "router"];

/** A request as the router logged it. */
export interface RouterRequest {
  method: string;
  path: string;
  status: number;
  durationMs: number;
  client: string;
  host: string;
  requestId: string;
  /** Why the router answered itself (rate_limited, maintenance, …), when it did. */
  reason?: string;
}

export interface LogEntry {
  /** ISO time the line was written. */
  time: string;
  source: LogSource;
  /** The process (web.1), or what deck was doing (build, deploy); null for router lines. */
  process: string | null;
  /** The line's message; for router lines, the request in words (`GET /path 200 12ms 1.2.3.4`). */
  text: string;
  /** The line as `logs` prints it. */
  line: string;
  request?: RouterRequest;
}

const APP_LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z) (app|deck)\[([^\]]{1,128})\]: ?(.*)$/s;

/** One line of an app's log; null for a line in no known format. */
export function parseAppLogLine(line: string): LogEntry | null {
  const m = APP_LINE.exec(line);
  if (!m) return null;
  return { time: m[1]!, source: m[2] as LogSource, process: m[3]!, text: m[4]!, line };
}

/** Control characters of a logged path or host are shown escaped, so they cannot drive the reader's terminal. */
const visible = (s: string) => s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);

/** The router's line for a request, in words. */
export function describeRequest(r: RouterRequest): string {
  const ms = r.durationMs >= 100 ? r.durationMs.toFixed(0) : r.durationMs.toFixed(1);
  return `${r.method} ${visible(r.path)} ${r.status} ${ms}ms ${r.client}${r.reason ? ` (${r.reason})` : ""}`;
}

/**
 * One access log line, when it belongs to `app`. The `"app":"NAME"` test comes first and is exact (the
 * router writes the name unescaped, and app names need no escaping), so other apps' lines are never parsed.
 */
export function parseRouterLine(line: string, app: string): LogEntry | null {
  if (!line.includes(`"app":"${app}"`)) return null;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (o.app !== app || typeof o.time !== "string") return null;
  const request: RouterRequest = {
    method: String(o.method ?? ""),
    path: String(o.path ?? ""),
    status: Number(o.status ?? 0),
    durationMs: Number(o.duration_ms ?? 0),
    client: String(o.client ?? ""),
    host: String(o.host ?? ""),
    requestId: String(o.request_id ?? ""),
    ...(typeof o.reason === "string" ? { reason: o.reason } : {}),
  };
  const text = describeRequest(request);
  return { time: o.time, source: "router", process: null, text, line: `${o.time} router: ${text}`, request };
}

/** What `logs APP --since … --grep … --process … --source …` keeps. */
export interface LogFilter {
  /** Epoch ms: lines written before are left out. */
  sinceMs?: number;
  /** A fixed string, matched case-insensitively against the line as shown. */
  grep?: string;
  /** `web.1` keeps that process; `web` keeps every web process. */
  process?: string;
  sources: ReadonlySet<LogSource>;
}

/** A filter as a predicate (the grep text lowered once). */
export function matcher(f: LogFilter): (e: LogEntry) => boolean {
  const needle = f.grep?.toLowerCase();
  const proc = f.process;
  const byType = proc !== undefined && !proc.includes(".");
  return (e) => {
    if (!f.sources.has(e.source)) return false;
    if (f.sinceMs !== undefined && Date.parse(e.time) < f.sinceMs) return false;
    if (proc !== undefined) {
      if (e.process === null) return false;
      if (byType ? e.process !== proc && !e.process.startsWith(`${proc}.`) : e.process !== proc) return false;
    }
    return needle === undefined || e.line.toLowerCase().includes(needle);
  };
}

// ---------- parsing what users type ----------

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A duration like 30s, 30m, 1h, 2d, 1w; null when it is not one. */
export function parseDuration(raw: string): number | null {
  const m = /^(\d{1,6})([smhdw])$/.exec(raw.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : null;
}

/** `--since`: a duration back from `now` (1h, 30m, 2d) or an ISO time (2026-01-05, 2026-01-05T10:00:00Z). */
export function parseSince(raw: string, now: number): Parsed<number> {
  const back = parseDuration(raw);
  if (back !== null) return { ok: true, value: now - back };
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw.trim())) {
    const t = Date.parse(raw.trim().replace(" ", "T"));
    if (Number.isFinite(t)) return { ok: true, value: t };
  }
  return { ok: false, message: `--since takes a duration like 30m, 1h or 2d, or a time like 2026-01-05T10:00:00Z; got "${raw.slice(0, 40)}"` };
}

/** `--source`: app, deck, router, a comma-separated list of them, or all. */
export function parseSources(raw: string): Parsed<Set<LogSource>> {
  if (raw === "all") return { ok: true, value: new Set(LOG_SOURCES) };
  const parts = raw.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !(LOG_SOURCES as readonly string[]).includes(p))) {
    return { ok: false, message: `--source takes app, deck, router, a list like app,router, or all; got "${raw.slice(0, 40)}"` };
  }
  return { ok: true, value: new Set(parts as LogSource[]) };
}

/** `--process`: a process like web.1, or a type like web. */
export function parseProcess(raw: string): Parsed<string> {
  return /^[a-z0-9_-]{1,63}(\.\d{1,6})?$/i.test(raw)
    ? { ok: true, value: raw }
    : { ok: false, message: `--process takes a process like web.1 or a process type like web; got "${raw.slice(0, 40)}"` };
}

export const MAX_GREP_LENGTH = 500;

/** `--grep`: any text (matched as is, never as a pattern). */
export function parseGrep(raw: string): Parsed<string> {
  if (raw.length === 0) return { ok: false, message: "--grep needs some text to look for" };
  if (raw.length > MAX_GREP_LENGTH) return { ok: false, message: `--grep takes at most ${MAX_GREP_LENGTH} characters` };
  return { ok: true, value: raw };
}
