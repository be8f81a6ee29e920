import { join } from "node:path";
import { followLog } from "../../deploy/index.ts";
import { matcher, parseAppLogLine, parseRouterLine, type LogEntry, type LogFilter } from "./log-line.ts";
import { scanBackward } from "./log-window.ts";

/**
 * `logs APP --since … --grep … --process … --source …`: the newest matching lines of the app's log and
 * of the router's access log (the app's own requests only), merged in time order, and then (`-t`) each
 * new matching line as it is written. Each file is read backwards from its end, at most
 * `maxScanBytes` of it, and the answer says when older lines were left unread.
 */

/** How much of each file one search reads at most. */
export const DEFAULT_MAX_SCAN_BYTES = 16 * 1024 * 1024;

export interface LogFiles {
  app: string;
  /** The app's log (app and deck lines). */
  appLog: string;
  /** The router's access log, shared by every app. */
  accessLog: string;
}

export interface SearchOptions {
  filter: LogFilter;
  /** The newest this many matching lines. */
  limit: number;
  maxScanBytes?: number;
}

export interface SearchResult {
  /** Oldest first. */
  entries: LogEntry[];
  /** Set when lines older than those read might have matched: says which logs were cut. */
  unsearched: string | null;
}

const size = (bytes: number) => (bytes >= 1024 * 1024 ? `${Number((bytes / 1024 / 1024).toFixed(1))} MiB` : `${Math.round(bytes / 1024)} KiB`);

export async function searchLogs(files: LogFiles, options: SearchOptions): Promise<SearchResult> {
  const keep = matcher(options.filter);
  const maxBytes = options.maxScanBytes ?? DEFAULT_MAX_SCAN_BYTES;
  const scan = { limit: options.limit, maxBytes, sinceMs: options.filter.sinceMs };
  const { sources } = options.filter;
  const wantAppLog = sources.has("app") || sources.has("deck");
  const [own, router] = await Promise.all([
    wantAppLog ? scanBackward(files.appLog, parseAppLogLine, keep, scan) : null,
    sources.has("router") ? scanBackward(files.accessLog, (l) => parseRouterLine(l, files.app), keep, scan) : null,
  ]);
  const entries = [...(own?.entries ?? []), ...(router?.entries ?? [])];
  // Both lists are in time order; a stable sort keeps each file's own order for equal times.
  entries.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  const cut = [own?.capped ? "the app's log" : null, router?.capped ? "the router's access log" : null].filter((c): c is string => c !== null);
  const unsearched = cut.length === 0 || entries.length >= options.limit
    ? null
    : `older lines were not searched: only the last ${size(maxBytes)} of ${cut.join(" and of ")} were read (narrow the search with --since)`;
  return { entries: entries.slice(-options.limit), unsearched };
}

/** Calls `onEntry` for each matching line written from now on, until the signal aborts. */
export async function followLogs(files: LogFiles, filter: LogFilter, onEntry: (e: LogEntry) => void, signal: AbortSignal, intervalMs?: number): Promise<void> {
  const keep = matcher(filter);
  // One file failing ends the other's follow too.
  const both = new AbortController();
  const stop = () => both.abort();
  signal.addEventListener("abort", stop, { once: true });
  const follow = (file: string, parse: (line: string) => LogEntry | null) =>
    followLog(file, (line) => {
      const e = parse(line);
      if (e && keep(e)) onEntry(e);
    }, both.signal, { intervalMs }).catch((e: unknown) => {
      both.abort();
      throw e;
    });
  const work: Promise<void>[] = [];
  if (filter.sources.has("app") || filter.sources.has("deck")) work.push(follow(files.appLog, parseAppLogLine));
  if (filter.sources.has("router")) work.push(follow(files.accessLog, (l) => parseRouterLine(l, files.app)));
  try {
    await Promise.all(work);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

/** The router's access log under a data dir (where router/paths.ts puts it). */
export function routerAccessLog(dataDir: string): string {
  return join(dataDir, "logs", "access.log");
}
