/**
 * Counting each request once it is over: metering by app (status class, bytes, latency, and why the
 * router answered itself) and one access-log line.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import type { Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import type { AccessLog } from "./access-log.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import type { Exchange } from "./exchange.ts";
import type { ForwardHeaders } from "./forward-headers.ts";
import type { Metering } from "./metering.ts";
import type { InboundRequest } from "./proxy-context.ts";
import type { RouteEntry } from "./route-table.ts";
import { chargeSocket, type ChargedSocket } from "./socket-charge.ts";

/** A request that is over, as it is metered and logged. */
export interface RequestRecord {
  readonly req: ProxyRequest;
  readonly fwd: ForwardHeaders;
  readonly app: string | null;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** To the latency histogram (for a tunnel, the time to the app's answer). */
  readonly latencyMs: number;
  /** To the access log (a tunnel's whole life). */
  readonly durationMs: number;
  readonly upstream: string | null;
  /** Why the router answered itself: counted as a rejection, and logged. */
  readonly reason: string | undefined;
  /** Logged only (an exchange counts its own rejections); defaults to `reason`. */
  readonly logReason?: string | undefined;
}

/**
 * deck's uptime checks carry `X-Deck-Probe: DECK_PROBE_TOKEN` (router/forward-headers.ts drops the field
 * before the app sees it), from this machine: a random secret deck keeps with its keys, so that neither
 * a client behind a proxy on this machine nor an app can pass its traffic off as a check.
 */
function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127."));
}

/** The client went away (an HTTP/2 response has no `destroyed` of its own: its stream has). */
export function clientGone(res: ProxyResponse): boolean {
  return res.destroyed === true || (res as unknown as Http2ServerResponse).stream?.destroyed === true;
}

export class RequestRecorder {
  private readonly probeToken: Buffer | undefined;

  constructor(private readonly metering: Metering, private readonly accessLog: AccessLog | undefined, probeToken?: string) {
    this.probeToken = probeToken && probeToken.length >= 16 ? Buffer.from(probeToken) : undefined;
  }

  /** deck's own uptime check: the secret only deck and this router hold, from this machine. */
  private isProbe(fwd: ForwardHeaders): boolean {
    if (fwd.probe === undefined || this.probeToken === undefined || !isLoopback(fwd.client)) return false;
    const given = Buffer.from(fwd.probe);
    return given.length === this.probeToken.length && timingSafeEqual(given, this.probeToken);
  }

  /**
   * Counts the request when its response is done (or the client went away). `reason` is set when the
   * router answered itself; a forwarded request's exchange tells when it is done.
   */
  track(r: InboundRequest, entry: RouteEntry | null, reason?: string, exchange?: Exchange): void {
    const done = () => this.count(r, entry, reason, exchange);
    // A forwarded request's exchange already listens for the close: one listener per request, not two.
    if (exchange !== undefined) exchange.onDone = done;
    else r.res.once("close", done);
  }

  /** Counts a request that is over: answered, or given up by its client (499). */
  count(r: InboundRequest, entry: RouteEntry | null, reason?: string, exchange?: Exchange): void {
    const { req, res } = r;
    const status = res.headersSent ? res.statusCode : 499;
    const [bytesIn, bytesOut] = req.httpVersionMajor === 2
      ? http2Bytes(req, res as unknown as Http2ServerResponse, exchange)
      : chargeSocket(req.socket as ChargedSocket);
    const ms = performance.now() - r.start;
    // Latency is the app's: until its response head, so a client that downloads slowly does not count;
    // and from the end of the request's body when the app answered after it, so a slow upload does not either.
    const headAt = exchange?.headAt;
    const bodyDoneAt = exchange?.bodyDoneAt;
    const latencyMs = headAt === undefined ? ms : headAt - (bodyDoneAt !== undefined && bodyDoneAt < headAt ? bodyDoneAt : r.start);
    this.record({
      req, fwd: r.fwd, app: entry === null ? null : entry.app, status, bytesIn, bytesOut, latencyMs, durationMs: ms,
      // An exchange's own reason (an app that did not answer …) is counted by the exchange; here it is logged.
      upstream: exchange?.upstreamAddress ?? null, reason, logReason: reason ?? exchange?.reason,
    });
  }

  record(r: RequestRecord): void {
    const app = r.app;
    // deck's own uptime checks (from this machine, marked) are not the app's traffic: logged, not metered.
    if (app !== null && !this.isProbe(r.fwd)) {
      this.metering.record(app, r.status, r.bytesIn, r.bytesOut, r.latencyMs / 1000);
    }
    if (r.reason !== undefined) this.metering.reject(app ?? "", r.reason);
    const req = r.req;
    const fwd = r.fwd;
    // The address as the request arrived: an HTTP/2 stream has left its session by the time it closes.
    this.accessLog?.write({
      requestId: fwd.requestId, app, client: fwd.client, method: req.method, host: fwd.host, path: req.url,
      protocol: `HTTP/${req.httpVersion}`, status: r.status, bytesIn: r.bytesIn, bytesOut: r.bytesOut, durationMs: r.durationMs,
      upstream: r.upstream, reason: "logReason" in r ? r.logReason : r.reason,
    });
  }

  /**
   * A request the router answered before it could be read as one (malformed, too large a head, a
   * head not sent in time, too many connections): an access-log line with what is known, and the
   * rejection counted under no app.
   */
  refused(socket: Pick<Socket, "remoteAddress">, status: number, reason: string, protocol = "HTTP/1.1"): void {
    this.metering.reject("", reason);
    this.accessLog?.write({
      requestId: randomUUID(), app: null, client: socket.remoteAddress, method: undefined, host: undefined, path: undefined,
      protocol, status, bytesIn: 0, bytesOut: 0, durationMs: 0, upstream: null, reason,
    });
  }
}

/**
 * Bytes of one HTTP/2 request and its response, for metering: header fields and bodies as sent,
 * before HPACK compression and framing. One connection carries many requests at once, so its own
 * byte counts cannot be split between them.
 */
function http2Bytes(req: ProxyRequest, res: Http2ServerResponse, exchange: Exchange | undefined): [number, number] {
  const raw = req.rawHeaders;
  let bytesIn = 2;
  for (let i = 0; i < raw.length; i += 2) bytesIn += raw[i].length + raw[i + 1].length + 4;
  const headers = res.getHeaders();
  let bytesOut = 2;
  for (const name in headers) bytesOut += name.length + String(headers[name]).length + 4;
  if (exchange !== undefined) bytesIn += exchange.bodyBytesIn;
  // A response relayed from the app counts what was passed on; the router's own answers (404, 413,
  // 502 …) declare their length.
  if (exchange !== undefined && exchange.relayed) bytesOut += exchange.bodyBytesOut;
  else bytesOut += Number(headers["content-length"] ?? 0) || 0;
  return [bytesIn, bytesOut];
}
