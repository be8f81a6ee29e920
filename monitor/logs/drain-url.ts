import { isIP } from "node:net";
import type { DrainKind } from "../../store/queries/logs.ts";
import type { Parsed } from "./log-line.ts";

/**
 * Where a drain ships to, as users give it:
 *
 * - `syslog+tls://HOST:PORT` — RFC 5424 messages over TLS (RFC 5425, octet-counting framing); the
 *   receiver's certificate must be valid for HOST (system CAs). Port 6514 when left out.
 * - `syslog://HOST:PORT` — the same over plain TCP (RFC 6587), for receivers on a private network. Port 514.
 * - `https://HOST[:PORT]/PATH?QUERY` — batches of lines POSTed as JSON lines (`application/x-ndjson`);
 *   a `user:password@` in the URL is sent as HTTP Basic authentication.
 */

export interface DrainTarget {
  kind: DrainKind;
  /** As given (normalised by URL parsing); stored sealed. */
  url: string;
  host: string;
  port: number;
}

const DEFAULT_PORT: Record<DrainKind, number> = { syslog: 514, "syslog+tls": 6514, https: 443 };
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const USAGE = "give syslog+tls://HOST:PORT, syslog://HOST:PORT or https://HOST/PATH";

const isHost = (h: string) => h.length <= 253 && h.split(".").every((l) => LABEL.test(l));

export function parseDrainUrl(raw: string): Parsed<DrainTarget> {
  if (raw.length > 2048) return { ok: false, message: "a drain URL is at most 2048 characters" };
  if (/[\s\x00-\x1f\x7f]/.test(raw)) return { ok: false, message: "a drain URL has no spaces or control characters" };
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== "syslog" && scheme !== "syslog+tls" && scheme !== "https") {
    return { ok: false, message: `unsupported drain URL "${mask(raw).slice(0, 80)}": ${USAGE}` };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: `not a URL: ${USAGE}` };
  }
  const bracketed = url.hostname.startsWith("[");
  const host = (bracketed ? url.hostname.slice(1, -1) : url.hostname).toLowerCase();
  if (!(bracketed ? isIP(host) === 6 : isIP(host) === 4 || isHost(host))) return { ok: false, message: `the drain URL has no valid host name: ${USAGE}` };
  const kind = scheme;
  if (kind !== "https") {
    if (url.username || url.password) return { ok: false, message: "a syslog drain URL takes no user or password" };
    if ((url.pathname !== "" && url.pathname !== "/") || url.search || url.hash) return { ok: false, message: `a syslog drain URL is only ${kind}://HOST:PORT` };
  } else if (url.hash) {
    return { ok: false, message: "a drain URL has no #fragment" };
  }
  const port = url.port ? Number(url.port) : DEFAULT_PORT[kind];
  const normalised = kind === "https" ? url.toString() : `${kind}://${url.hostname.toLowerCase()}:${port}`;
  return { ok: true, value: { kind, url: normalised, host, port } };
}

/** The URL as drains:list shows it: host and port in clear; a password, path or query (where tokens go) masked. */
export function maskDrainUrl(raw: string): string {
  return mask(raw);
}

function mask(raw: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)(?:[^/@?#]*@)?([^/?#]*)([^?#]*)(\?[^#]*)?/i.exec(raw);
  if (!m) return "***";
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/[^/@?#]*@/i.test(raw) ? "***@" : "";
  const path = m[3] && m[3] !== "/" ? "/***" : m[3] ?? "";
  return `${m[1]}${userinfo}${m[2]}${path}${m[4] ? "?***" : ""}`;
}
