/** Helpers for the log tests: lines in the formats deck's writers use, and waiting for a condition. */
import { appendFileSync } from "node:fs";

/** A line of an app's log as the process supervisor or deck writes it. */
export function appLine(at: Date | number, source: "app" | "deck", process: string, text: string): string {
  return `${new Date(at).toISOString()} ${source}[${process}]: ${text}`;
}

/** An access log line as the router writes it (router/access-log.ts). */
export function accessLine(at: Date | number, app: string | null, method: string, path: string, status: number, durationMs: number, client = "203.0.113.7"): string {
  return JSON.stringify({
    time: new Date(at).toISOString(), request_id: `req-${Math.random().toString(36).slice(2, 10)}`, app, client, method, host: `${app ?? "unknown"}.localhost`,
    path, protocol: "HTTP/1.1", status, bytes_in: 0, bytes_out: 12, duration_ms: Number(durationMs.toFixed(3)), upstream: app ? "127.0.0.1:5001" : null,
  });
}

export function appendLines(file: string, lines: string[]): void {
  if (lines.length > 0) appendFileSync(file, lines.map((l) => `${l}\n`).join(""));
}

/** Polls `check` until it returns something other than undefined/false, or fails after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}
