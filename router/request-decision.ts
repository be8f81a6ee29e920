/**
 * What the router does with a request before anything reaches the app: one ladder for HTTP/1,
 * HTTP/2 and upgrade (WebSocket) handshakes alike. Pure: the request's facts in, a decision out; the
 * request and upgrade paths act on it.
 *
 * The ladder, in order: unknown host 404, redirect-https 308, maintenance 503, rate limit 429, a
 * declared body over the limit 413, then the app's processes: forward to one, hold the request while
 * a paused app starts, or 503 when it has none. A step that waits (the rate limiter's answer, a
 * held start) decides again afterwards with the route as the table has it then.
 */
import { burstForRate } from "../core/index.ts";
import type { RouterLimits } from "./limits.ts";
import type { RouteEntry } from "./route-table.ts";

/** Why the router answered a request itself (metered as `deck_router_rejected_total{reason}`, logged). */
export type RefusalReason = "unknown_host" | "redirect_https" | "maintenance" | "rate_limited" | "body_too_large" | "no_release";

/** What is known about a request when its fate is decided. */
export interface RequestFacts {
  /** The route for the request's host as the table has it now; undefined when no app has that host. */
  readonly entry: Pick<RouteEntry, "app" | "upstreams" | "settings"> | undefined;
  /** The Host as the client sent it (for the 404 page and the redirect). */
  readonly host: string | undefined;
  readonly url: string | undefined;
  /** The request arrived over TLS. */
  readonly secure: boolean;
  /** The client's address (named in a 429's page). */
  readonly client: string | undefined;
  /** The declared Content-Length; -1 when none. */
  readonly contentLength: number;
  /** The rate limiter's answer once asked: 0 = go ahead, N = seconds until a request would pass. */
  readonly retryAfter: number | undefined;
  /** An upgrade handshake: it is never held for a starting app (its client waits on a bare socket). */
  readonly upgrade: boolean;
  /** The router is shutting down: nothing will start behind it, so nothing is held. */
  readonly closing: boolean;
}

/** The server-wide settings the ladder reads (each route's own settings win over the limits). */
export interface RouterPolicy {
  readonly limits: Pick<RouterLimits, "rateLimitRps" | "rateLimitBurst" | "maxBodyBytes">;
  /** The HTTPS port redirects name (443: none in the URL). */
  readonly httpsPort: number;
}

/** The router answers itself, with a short plain-text page. */
export interface Answer {
  readonly kind: "answer";
  readonly status: number;
  readonly reason: RefusalReason;
  readonly body: string;
  /** Fields beside Content-Type and Content-Length, in this order. */
  readonly headers: Readonly<Record<string, string | number>>;
  /** The connection closes after the answer (a body that will not be read follows it). */
  readonly closeConnection: boolean;
}

export type Decision =
  | Answer
  /** Ask the rate limiter, then decide again with its answer as `retryAfter`. */
  | { readonly kind: "ask-rate-limiter"; readonly app: string; readonly client: string; readonly rps: number; readonly burst: number }
  /** Hold the request until the app's route gets processes (or the pause timeout passes), then decide again. */
  | { readonly kind: "hold" }
  /** Send it to one of the app's processes; `maxBody` bounds a body of unknown length (0 = no limit). */
  | { readonly kind: "forward"; readonly maxBody: number };

const HOLD: Decision = { kind: "hold" };

function answer(status: number, reason: RefusalReason, body: string, headers: Record<string, string | number> = {}, closeConnection = false): Answer {
  return { kind: "answer", status, reason, body, headers, closeConnection };
}

/** Decides what happens to a request next. */
export function decide(facts: RequestFacts, policy: RouterPolicy): Decision {
  const entry = facts.entry;
  if (entry === undefined) return answer(404, "unknown_host", notFoundBody(facts.host));
  const settings = entry.settings;
  if (settings.redirectHttps === true && !facts.secure && facts.host !== undefined) {
    const location = httpsLocation(facts.host, facts.url, policy.httpsPort);
    return answer(308, "redirect_https", `moved to ${location}\n`, { Location: location });
  }
  if (settings.maintenance === true) return answer(503, "maintenance", `${entry.app} is down for maintenance; please try again later\n`, { "Retry-After": 60 });
  const retryAfter = facts.retryAfter;
  if (retryAfter === undefined) {
    const rps = settings.rateLimitRps ?? policy.limits.rateLimitRps;
    if (rps > 0) {
      // An app's own rate brings its own burst (two seconds' worth) unless it sets one.
      const burst = settings.rateLimitBurst ?? (settings.rateLimitRps !== undefined ? burstForRate(rps) : policy.limits.rateLimitBurst);
      return { kind: "ask-rate-limiter", app: entry.app, client: facts.client ?? "", rps, burst };
    }
  } else if (retryAfter > 0) {
    const from = facts.upgrade ? "" : ` from ${facts.client ?? "your address"}`;
    return answer(429, "rate_limited", `too many requests to ${entry.app}${from}; retry after ${retryAfter}s\n`, { "Retry-After": retryAfter });
  }
  const maxBody = settings.maxBodyBytes ?? policy.limits.maxBodyBytes;
  if (maxBody > 0 && facts.contentLength > maxBody) {
    // The body is not read: the connection closes after the answer.
    return answer(413, "body_too_large", `request body of ${facts.contentLength} bytes is larger than the ${maxBody} bytes ${entry.app} accepts\n`, {}, true);
  }
  if (entry.upstreams.length > 0) return { kind: "forward", maxBody };
  if (settings.paused === true && !facts.upgrade && !facts.closing) return HOLD;
  return answer(503, "no_release", `app "${entry.app}" has no running release\n`);
}

function notFoundBody(host: string | undefined): string {
  return host === undefined ? "no Host header in the request\n" : `no app is configured for host ${JSON.stringify(host)}\n`;
}

/** Where a plain-HTTP request to an app with `redirectHttps` is sent: the same host and target over HTTPS. */
export function httpsLocation(host: string, url: string | undefined, httpsPort: number): string {
  const hostOnly = host.charCodeAt(0) === 91 ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
  return `https://${hostOnly}${httpsPort === 443 ? "" : `:${httpsPort}`}${url ?? "/"}`;
}
