import { open } from "node:fs/promises";
import { isBlankLogLine } from "../../deploy/app-log.ts";
import type { LogEntry } from "./log-line.ts";

/**
 * Reading a log file backwards from its end, a chunk at a time, for the newest lines that match, and
 * never more than `maxBytes` of it: a search costs the same on a 5 GB access log as on a small one.
 */

const CHUNK = 1024 * 1024;
/** Lines are written in time order give or take a moment (several processes share one file). */
const ORDER_SLACK_MS = 60_000;

export interface ScanOptions {
  /** Stop once this many lines matched. */
  limit: number;
  /** Read at most this many bytes from the end. */
  maxBytes: number;
  /** Stop at lines older than this (epoch ms). */
  sinceMs?: number;
}

export interface ScanResult {
  /** Oldest first. */
  entries: LogEntry[];
  /** Lines the scan did not reach because of `maxBytes` might have matched. */
  capped: boolean;
}

/** The newest lines of `file` that `parse` reads and `keep` keeps, oldest first. A missing file has none. */
export async function scanBackward(
  file: string, parse: (line: string) => LogEntry | null, keep: (e: LogEntry) => boolean, options: ScanOptions,
): Promise<ScanResult> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], capped: false };
    throw e;
  }
  const found: LogEntry[] = [];
  try {
    const { size } = await fh.stat();
    let pos = size;
    let scanned = 0;
    // The start of a line whose end was read already, waiting for the chunk that holds its beginning.
    let rest = Buffer.alloc(0);
    let atEnd = true;
    while (pos > 0 && scanned < options.maxBytes) {
      const len = Math.min(CHUNK, pos, options.maxBytes - scanned);
      pos -= len;
      scanned += len;
      const chunk = Buffer.alloc(len);
      await fh.read(chunk, 0, len, pos);
      let data = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk;
      if (atEnd) {
        // A line still being written at the end is left for later.
        data = data.subarray(0, data.lastIndexOf(0x0a) + 1);
        atEnd = data.length === 0;
        if (atEnd) continue;
      }
      const firstNewline = data.indexOf(0x0a);
      if (pos > 0 && firstNewline === -1) {
        rest = data;
        continue;
      }
      const startAt = pos === 0 ? 0 : firstNewline + 1;
      rest = data.subarray(0, startAt);
      let end = data.length;
      while (end > startAt) {
        const lineStart = Math.max(startAt, (end >= 2 ? data.lastIndexOf(0x0a, end - 2) : -1) + 1);
        const line = data.toString("utf8", lineStart, data[end - 1] === 0x0a ? end - 1 : end);
        end = lineStart;
        if (isBlankLogLine(line)) continue;
        const entry = parse(line);
        if (!entry) continue;
        if (options.sinceMs !== undefined && Date.parse(entry.time) < options.sinceMs - ORDER_SLACK_MS) return { entries: found.reverse(), capped: false };
        if (!keep(entry)) continue;
        found.push(entry);
        if (found.length >= options.limit) return { entries: found.reverse(), capped: false };
      }
    }
    return { entries: found.reverse(), capped: pos > 0 };
  } finally {
    await fh.close();
  }
}
