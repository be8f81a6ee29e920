import { DeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  followLogs, parseGrep, parseProcess, parseSince, parseSources, routerAccessLog, searchLogs, type LogEntry, type LogFilter, type LogFiles, type Parsed,
} from "../monitor/logs/index.ts";
import { authorizeApp, type Caller } from "./access.ts";

/**
 * `logs APP --since 1h --grep TEXT --process web.1 --source app|deck|router|all [-n N] [-t]` and
 * `GET /apps/APP/logs?since=…&grep=…&process=…&source=…`: the app's log searched, with its router
 * access lines when asked. Whoever may read the app's logs (`app:logs`) may search them.
 */

/** The filters as users give them (SSH flags, API query parameters); all optional. */
export interface LogQuery {
  since?: string;
  grep?: string;
  process?: string;
  source?: string;
}

export interface AppLogSearch {
  /** Oldest first. */
  entries: LogEntry[];
  /** Set when older lines were not searched (the reason, for the reader). */
  unsearched: string | null;
  /** Each new matching line from now on, until `signal` aborts. */
  follow(onEntry: (e: LogEntry) => void, signal: AbortSignal): Promise<void>;
}

/** At most this many lines per answer. */
export const MAX_SEARCH_LINES = 100_000;

/** True when the query asks for nothing but the log itself (then `logs` prints it exactly as it is). */
export function isPlainLogQuery(q: LogQuery): boolean {
  return q.since === undefined && q.grep === undefined && q.process === undefined && q.source === undefined;
}

function must<T>(p: Parsed<T>): T {
  if (!p.ok) throw new DeckError("bad_argument", p.message);
  return p.value;
}

/** Checks a query and turns it into a filter (default sources: the app's log, app and deck lines). */
export function logFilterOf(q: LogQuery, now = Date.now()): LogFilter {
  return {
    ...(q.since !== undefined ? { sinceMs: must(parseSince(q.since, now)) } : {}),
    ...(q.grep !== undefined ? { grep: must(parseGrep(q.grep)) } : {}),
    ...(q.process !== undefined ? { process: must(parseProcess(q.process)) } : {}),
    sources: q.source !== undefined ? must(parseSources(q.source)) : new Set(["app", "deck"] as const),
  };
}

/** The newest `lines` matching lines of the app's logs, for whoever may read its logs. */
export async function searchAppLog(deps: DeployDeps, caller: Caller, name: string, q: LogQuery, lines: number): Promise<AppLogSearch> {
  if (!Number.isInteger(lines) || lines < 0 || lines > MAX_SEARCH_LINES) throw new DeckError("bad_argument", `-n takes a number of lines from 0 to ${MAX_SEARCH_LINES}`);
  const filter = logFilterOf(q);
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const files: LogFiles = { app: app.name, appLog: deps.paths.appLog(app.name), accessLog: routerAccessLog(deps.paths.dataDir) };
  const found = lines === 0 ? { entries: [], unsearched: null } : await searchLogs(files, { filter, limit: lines });
  const routerOff = filter.sources.has("router") && deps.config.accessLog === "off"
    ? "the router writes no access log on this server (DECK_ACCESS_LOG=off): no router lines" : null;
  return { ...found, unsearched: [routerOff, found.unsearched].filter((n) => n !== null).join("; ") || null, follow: (onEntry, signal) => followLogs(files, filter, onEntry, signal) };
}
