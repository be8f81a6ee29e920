import http from "node:http";
import type { CheckResult } from "./probe-state.ts";

/** One check: GET of an app's health check path through deck's router, as a user reaches the app. */
export interface ProbeRequest {
  /** Where the router listens (DECK_HTTP_PORT on this machine). */
  host: string;
  port: number;
  /** APP.DOMAIN: the name the router serves the app under. */
  hostHeader: string;
  path: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** The router's secret for deck's own checks (DECK_PROBE_TOKEN): the check is then not metered as the app's traffic. */
  probeToken?: string;
}

/** What users read as a failed check's cause. */
const ERROR_CAUSES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection closed before an answer",
  EPIPE: "connection closed before an answer",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EADDRNOTAVAIL: "address not available",
};

export function timeoutCause(timeoutMs: number): string {
  return `timed out after ${Number((timeoutMs / 1000).toFixed(1))} s`;
}

/**
 * A status below 500 is up (a 404 or a redirect is still the app answering). The whole exchange up to
 * the status line must finish within `timeoutMs`. Resolves "aborted" when `signal` ends it (deck stops):
 * that is no check at all.
 */
export function probeApp(r: ProbeRequest): Promise<CheckResult | "aborted"> {
  return new Promise((resolve) => {
    if (r.signal?.aborted) return resolve("aborted");
    let settled = false;
    const finish = (result: CheckResult | "aborted") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.signal?.removeEventListener("abort", onAbort);
      req.destroy();
      resolve(result);
    };
    const req = http.get({
      host: r.host, port: r.port, path: r.path, agent: false,
      // Marked so that deck's router does not meter the check as the app's traffic (router/request-recorder.ts).
      headers: { host: r.hostHeader, "user-agent": "deck-uptime", connection: "close", ...(r.probeToken ? { "x-deck-probe": r.probeToken } : {}) },
    }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish(status > 0 && status < 500 ? { ok: true, status } : { ok: false, cause: `HTTP ${status}` });
    });
    const timer = setTimeout(() => finish({ ok: false, cause: timeoutCause(r.timeoutMs) }), r.timeoutMs);
    const onAbort = () => finish("aborted");
    r.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (e: NodeJS.ErrnoException) => {
      const code = e.code ?? "";
      finish({ ok: false, cause: ERROR_CAUSES[code] ?? (code ? `request failed (${code})` : "request failed") });
    });
  });
}
