/**
 * The HTTP/1.1 reverse proxy apps are served through (RFC 9110 §7.6 for forwarding, RFC 9112 for
 * framing, RFC 6455 §4 for the WebSocket handshake).
 *
 * This is the hot path: requests are read and answered by the router's own HTTP/1.1 code
 * (client-connection.ts), headers are rewritten in one pass over `rawHeaders` (no header object, no
 * URL parsing), bodies stream in both directions, and upstream connections are pooled per address
 * (upstream-pool.ts).
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import net, { type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import { burstForRate, listenOn } from "../core/index.ts";
import type { AccessLog } from "./access-log.ts";
import { ACME_CHALLENGE_PREFIX, AcmeChallenges } from "./acme-challenges.ts";
import { ClientConnection, type ConnectionHost, type ProxyRequest, type ProxyResponse } from "./client-connection.ts";
import { buildForwardHeaders, buildResponseHeaders, type ForwardHeaders } from "./forward-headers.ts";
import { ConnectionCounter, DEFAULT_LIMITS, LocalRateLimiter, type RateDecision, type RateLimiter, type RouterLimits } from "./limits.ts";
import { Exchange, NOT_CONNECTED, type ExchangeHost, type UpstreamLoad } from "./exchange.ts";
import { Metering } from "./metering.ts";
import { chargeSocket, type ChargedSocket } from "./socket-charge.ts";
import { plainText, rawPlainText } from "./plain-answers.ts";
import { RouteTable, type RouteEntry, type UpstreamAddress } from "./route-table.ts";
import { UpstreamPool } from "./upstream-pool.ts";

export interface ProxyServerOptions {
  table: RouteTable;
  log?: (line: string) => void;
  /** Idle connections kept per upstream (default 256). */
  maxIdlePerUpstream?: number;
  /** Server-wide limits; each route's settings win over them. Default: DEFAULT_LIMITS. */
  limits?: Partial<RouterLimits>;
  /** Where rate-limit buckets live (default: this process's memory). */
  rateLimiter?: RateLimiter;
  /** One JSON line per request; none when unset. */
  accessLog?: AccessLog;
  /** The HTTPS port, for redirects of apps with `redirectHttps` (443 = no port in the URL). */
  httpsPort?: number;
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

/** The client went away (an HTTP/2 response has no `destroyed` of its own: its stream has). */
function clientGone(res: ProxyResponse): boolean {
  return res.destroyed === true || (res as unknown as Http2ServerResponse).stream?.destroyed === true;
}

/** How an upgrade request ended, for its metering and log line. */
interface UpgradeOutcome {
  /** The status the client got (101 for a tunnel); 0 while there is none. */
  status: number;
  /** Why the router answered itself. */
  reason: string | undefined;
  upstream: string | null;
  /** When the app answered (performance.now()); the latency histogram's sample. */
  answeredAt?: number;
}

/** A request whose body is still arriving, since its head was read (Date.now()). */
interface PendingBody {
  since: number;
  res: ProxyResponse;
  /** Set once the request goes to the app. */
  exchange: Exchange | undefined;
}

/** Bytes a client may send before the app accepts its upgrade; past them it is not read until then. */
const EARLY_TUNNEL_BYTES = 64 * 1024;

/**
 * What a client sends after an upgrade request and before the app accepts it, kept for the tunnel
 * (up to EARLY_TUNNEL_BYTES). While it is watched, the connection is read, so a client that closes
 * it (or only its side: it has given up, as for any request) is noticed.
 */
class EarlyBytes {
  private chunks: Buffer[];
  private bytes: number;
  private watching = false;
  private readonly collect = (data: Buffer) => {
    this.chunks.push(data);
    this.bytes += data.length;
    if (this.bytes >= EARLY_TUNNEL_BYTES) this.socket.pause();
  };
  private readonly onEnd = () => this.socket.destroy();

  constructor(private readonly socket: Duplex, head: Buffer) {
    this.chunks = head.length > 0 ? [head] : [];
    this.bytes = head.length;
  }

  watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.socket.on("data", this.collect);
    this.socket.once("end", this.onEnd);
    // The connection may have been paused (explicitly) when it left HTTP.
    if (this.bytes < EARLY_TUNNEL_BYTES) this.socket.resume();
  }

  /** Stops reading; what arrives next waits in the socket. */
  stop(): void {
    if (!this.watching) return;
    this.watching = false;
    this.socket.off("data", this.collect);
    this.socket.off("end", this.onEnd);
    this.socket.pause();
  }

  take(): Buffer {
    const all = Buffer.concat(this.chunks, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    return all;
  }
}

function maintenanceBody(app: string): string {
  return `${app} is down for maintenance; please try again later\n`;
}

/**
 * An HTTP/2 body needs no Content-Length (RFC 9113 §8.1.1): its end is the stream's. The HTTP/1.1
 * upstream gets it chunked (RFC 9112 §7.1), whatever the method.
 */
function framePlainBody(req: Http2ServerRequest, fwd: ForwardHeaders): void {
  if (fwd.contentLength >= 0 || req.stream.endAfterHeaders) return;
  fwd.hasBody = true;
  fwd.headers.push("Transfer-Encoding", "chunked");
}

/** How the log line of an exception caught while serving a request starts (the fuzzer looks for it). */
export const INTERNAL_ERROR = "internal error";

/** The answer to a request whose serving threw: a 500 if nothing was sent yet, else its connection (or stream) is cut. */
function answerInternalError(req: ProxyRequest, res: ProxyResponse): void {
  try {
    if (res.headersSent || res.writableFinished) return void res.destroy();
    if (req.httpVersionMajor !== 2) res.shouldKeepAlive = false;
    plainText(res, 500, "the router failed to serve this request\n");
  } catch {
    try {
      res.destroy();
    } catch {
      req.socket.destroy();
    }
  }
}

function notFoundBody(host: string | undefined): string {
  return host === undefined ? "no Host header in the request\n" : `no app is configured for host ${JSON.stringify(host)}\n`;
}

/** An idle keep-alive client connection is closed after this long (Node's and nginx's defaults are 5 s and 75 s). */
const CLIENT_KEEP_ALIVE_MS = 65_000;

export class ProxyServer implements ExchangeHost, ConnectionHost {
  readonly server: net.Server;
  /** Open plain-HTTP client connections. */
  private readonly clients = new Set<ClientConnection>();
  private readonly table: RouteTable;
  private readonly log: (line: string) => void;
  /** Keep-alive connections per upstream address. */
  private readonly pools = new Map<string, UpstreamPool>();
  private readonly maxIdlePerUpstream: number;
  private readonly loads = new Map<string, UpstreamLoad>();
  private readonly tunnelSockets = new Set<Duplex>();
  /** Client sockets of open tunnels, by app: charged at each scrape and batch. */
  private readonly openTunnels = new Map<ChargedSocket, string>();
  private closing = false;
  private readonly sweepTimer: NodeJS.Timeout;
  readonly limits: RouterLimits;
  readonly metering: Metering;
  private readonly rateLimiter: RateLimiter;
  private readonly accessLog: AccessLog | undefined;
  private readonly httpsPort: number;
  private readonly connections = new ConnectionCounter();
  /** Open client connections with their byte counts at the last sweep, for the idle timeout. */
  private readonly activity = new Map<Socket, { read: number; written: number; since: number }>();
  private readonly idleTimer: NodeJS.Timeout;
  private openConnections = 0;
  /** Requests waiting for a paused (starting) app, by app. */
  private readonly paused = new Map<string, Set<() => void>>();
  /**
   * Requests whose body is still arriving, for the body timeout: looked at by the once-a-second
   * sweep (finished ones are dropped there), so a request pays one map entry, not a timer.
   */
  private readonly bodies = new Map<ProxyRequest, PendingBody>();
  /** ACME HTTP-01 answers, served for any Host before route lookup (set through the control API). */
  readonly challenges = new AcmeChallenges();

  constructor(options: ProxyServerOptions) {
    this.table = options.table;
    this.log = options.log ?? (() => {});
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.rateLimiter = options.rateLimiter ?? new LocalRateLimiter();
    this.accessLog = options.accessLog;
    this.httpsPort = options.httpsPort ?? 443;
    this.metering = new Metering({ connections: () => this.openConnections, inflight: () => this.totalInflight() }, () => {
      for (const [socket, app] of this.openTunnels) {
        const [bytesIn, bytesOut] = chargeSocket(socket);
        this.metering.addBytes(app, bytesIn, bytesOut);
      }
    });
    this.maxIdlePerUpstream = options.maxIdlePerUpstream ?? 256;
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    // Slow clients: a request head must arrive within the header timeout, an idle keep-alive
    // connection is closed after CLIENT_KEEP_ALIVE_MS, and any connection silent in both directions
    // for the idle timeout is closed; all checked once a second by sweepIdle. Bodies may take as long
    // as they keep moving (large uploads) up to the body timeout, counted from the request's head.
    const bodyTimeout = this.limits.bodyTimeoutMs > 0 ? this.limits.bodyTimeoutMs : Infinity;
    this.idleTimer = setInterval(() => this.sweepIdle(), Math.min(1000, this.limits.idleTimeoutMs, this.limits.headerTimeoutMs, bodyTimeout));
    this.idleTimer.unref();
    this.table.onChange(() => {
      this.wakePaused();
      this.retireUnrouted();
    });
    // Counters of upstreams that left the table are dropped once idle; done off the request path.
    this.sweepTimer = setInterval(() => this.sweepLoads(), 30_000);
    this.sweepTimer.unref();
  }

  private accept(socket: Socket): void {
    if (!this.admitConnection(socket)) return;
    this.clients.add(new ClientConnection(this, socket, () => this.closing));
  }

  connectionClosed(conn: ClientConnection): void {
    this.clients.delete(conn);
  }

  /**
   * Counts a new client connection against its address's cap; over the cap it gets a 429 and is
   * closed. The HTTPS front end calls this for its connections too. False = refused.
   */
  admitConnection(socket: Socket, plain = true): boolean {
    const address = socket.remoteAddress ?? "";
    if (!this.connections.tryOpen(address, this.limits.maxConnectionsPerIp)) {
      // Over TLS nothing is answered (no handshake yet), so there is no request to log either.
      if (plain) this.refused(socket, 429, "too_many_connections");
      else this.metering.reject("", "too_many_connections");
      socket.on("error", () => {});
      // Before a TLS handshake there is no way to answer in HTTP: the connection is just closed.
      if (!plain) {
        socket.destroy();
        return false;
      }
      const body = `too many open connections from ${address}; close some and try again\n`;
      socket.end(`HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`);
      socket.destroySoon?.();
      return false;
    }
    this.openConnections++;
    this.activity.set(socket, { read: 0, written: 0, since: Date.now() });
    socket.once("close", () => {
      this.openConnections--;
      this.activity.delete(socket);
      this.connections.close(address);
    });
    return true;
  }

  /**
   * Closes client connections on which no byte moved either way for the idle timeout, and pooled
   * upstream connections past their keep-alive time.
   */
  private sweepIdle(): void {
    const now = Date.now();
    for (const pool of this.pools.values()) pool.sweep(now);
    const headerLimit = this.limits.headerTimeoutMs;
    for (const conn of this.clients) {
      if (conn.headStartedAt > 0) {
        if (now - conn.headStartedAt >= headerLimit) conn.headerTimeout(Math.round(headerLimit / 1000));
      } else if (conn.idleSince > 0 && now - conn.idleSince >= (conn.socket.bytesRead === 0 ? headerLimit : CLIENT_KEEP_ALIVE_MS)) {
        // A connection that never sent a byte has the header timeout to start its request.
        conn.closeIfIdle();
      }
    }
    if (this.bodies.size > 0) this.sweepBodies(now);
    const limit = this.limits.idleTimeoutMs;
    for (const [socket, seen] of this.activity) {
      const read = socket.bytesRead;
      const written = socket.bytesWritten;
      if (read !== seen.read || written !== seen.written) {
        seen.read = read;
        seen.written = written;
        seen.since = now;
      } else if (now - seen.since >= limit) {
        socket.destroy();
      }
    }
  }

  /** Ends requests whose body did not arrive within the body timeout; forgets those whose body did, or whose client left. */
  private sweepBodies(now: number): void {
    const limit = this.limits.bodyTimeoutMs;
    for (const [req, pending] of this.bodies) {
      const res = pending.res;
      if (req.complete || clientGone(res) || req.socket?.destroyed !== false) {
        this.bodies.delete(req);
        continue;
      }
      if (now - pending.since < limit) continue;
      const seconds = Math.round(limit / 1000);
      if (pending.exchange !== undefined) {
        this.bodies.delete(req);
        this.guarded(req, res, () => pending.exchange!.bodyTimedOut(seconds));
      } else if (res.headersSent) {
        // The router answered without reading the body (404, 429 …), which still trickles in.
        this.bodies.delete(req);
        this.metering.reject("", "body_timeout");
        res.destroy();
      }
      // Else it waits for a starting app or a rate-limit decision: it is ended once forwarded.
    }
  }

  /** Requests plus WebSocket tunnels currently open to an upstream (`127.0.0.1:PORT`). */
  inflight(upstream: string): number {
    const load = this.loads.get(upstream);
    return load === undefined ? 0 : load.inflight + load.tunnels;
  }

  /** Requests plus tunnels in flight per upstream, for upstreams that have any. */
  inflightByUpstream(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [address, load] of this.loads) {
      const n = load.inflight + load.tunnels;
      if (n > 0) out[address] = n;
    }
    return out;
  }

  /** Total requests and tunnels in flight across all upstreams. */
  totalInflight(): number {
    let n = 0;
    for (const load of this.loads.values()) n += load.inflight + load.tunnels;
    return n;
  }

  private inflightRequests(): number {
    let n = 0;
    for (const load of this.loads.values()) n += load.inflight;
    return n;
  }

  listen(port: number, host: string): Promise<void> {
    return listenOn(this.server, port, host);
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left. */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.sweepTimer);
    clearInterval(this.idleTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of this.clients) conn.closeIfIdle();
    // Requests held for a starting app get their 503 now: nothing will start behind a closing router.
    for (const waiters of this.paused.values()) for (const wake of [...waiters]) wake();
    const until = Date.now() + deadlineMs;
    // Tunnels are long-lived by nature; only plain requests are waited for.
    while (Date.now() < until && this.inflightRequests() > 0) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const conn of this.clients) conn.socket.destroy();
    for (const socket of this.tunnelSockets) socket.destroy();
    for (const pool of this.pools.values()) pool.closeIdle();
    await this.rateLimiter.close();
    await closed;
    await this.accessLog?.close();
  }

  /** The connection pool for an upstream address. */
  poolFor(upstream: UpstreamAddress): UpstreamPool {
    let pool = this.pools.get(upstream.address);
    if (pool === undefined) {
      pool = new UpstreamPool(upstream.host, upstream.port, this.maxIdlePerUpstream);
      this.pools.set(upstream.address, pool);
    }
    return pool;
  }

  /**
   * Upstreams no route names any more (an old release after a switch) keep no idle connections: they
   * are closed now, and those still carrying a request are closed when it ends. A process being
   * drained then sees its keep-alive connections go instead of waiting for them to time out.
   */
  private retireUnrouted(): void {
    if (this.pools.size === 0) return;
    const routed = new Set<string>();
    for (const entry of this.table.snapshot.byApp.values()) for (const u of entry.upstreams) routed.add(u.address);
    for (const [address, pool] of this.pools) pool.setRetired(!routed.has(address));
  }

  loadFor(address: string): UpstreamLoad {
    let load = this.loads.get(address);
    if (load === undefined) {
      load = { inflight: 0, tunnels: 0 };
      this.loads.set(address, load);
    }
    return load;
  }

  private sweepLoads(): void {
    for (const [address, load] of this.loads) {
      if (load.inflight === 0 && load.tunnels === 0) this.loads.delete(address);
    }
    for (const [address, pool] of this.pools) {
      if (pool.connections === 0) this.pools.delete(address);
    }
  }

  /**
   * Serves one client request. `secure` is true when it arrived over TLS (the HTTPS front end calls
   * this too, with HTTP/2 compatibility objects for h2 connections).
   */
  handleRequest(req: ProxyRequest, res: ProxyResponse, secure = false): void {
    this.guarded(req, res, () => this.serveRequest(req, res, secure));
  }

  /**
   * Runs one step of serving a request. The last line of defence: an exception (a bug, or an input
   * no one thought of) costs the request it was serving a 500, or its connection, and a log line;
   * never the router, which serves every app.
   */
  private guarded(req: ProxyRequest, res: ProxyResponse, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.internalError(`${req.method} ${req.url}`, err);
      answerInternalError(req, res);
    }
  }

  /** Logs an exception caught while serving `what` (stack included: it is a bug to fix). */
  internalError(what: string, err: unknown): void {
    this.log(`${INTERNAL_ERROR} while serving ${what.slice(0, 200)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }

  private serveRequest(req: ProxyRequest, res: ProxyResponse, secure: boolean): void {
    if (req.url !== undefined && req.url.startsWith(ACME_CHALLENGE_PREFIX)) return this.challenges.answer(req, res);
    const start = performance.now();
    // HTTP/2 responses have no keep-alive flag; their connection closes with a GOAWAY instead.
    if (this.closing && req.httpVersionMajor === 1) res.shouldKeepAlive = false;
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, false, secure);
    if (req.httpVersionMajor === 2) framePlainBody(req as unknown as Http2ServerRequest, fwd);
    if (fwd.hasBody && this.limits.bodyTimeoutMs > 0 && !req.complete) this.bodies.set(req, { since: Date.now(), res, exchange: undefined });
    const entry = this.routeFor(req, res, fwd, start);
    if (entry === undefined) return;
    const decision = this.rateDecision(entry, req.socket.remoteAddress);
    if (typeof decision !== "number") {
      decision.then(
        (retryAfter) => this.guarded(req, res, () => this.afterRateLimit(req, res, fwd, entry, start, retryAfter)),
        () => this.guarded(req, res, () => this.afterRateLimit(req, res, fwd, entry, start, 0)),
      );
      return;
    }
    if (decision > 0) return this.rateLimited(req, res, fwd, entry, start, decision);
    this.forward(req, res, fwd, entry, start);
  }

  /**
   * The request's route as the table has it now, or undefined when the router answered instead: an
   * unknown host (404), redirect-https (308), maintenance (503). Asked again after every wait (a
   * shared rate-limit decision, a held request), since the route may have changed meanwhile.
   */
  private routeFor(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, start: number): RouteEntry | undefined {
    const entry = this.table.lookup(fwd.host);
    if (entry === undefined) {
      this.track(req, res, fwd, null, start, "unknown_host");
      res.setHeader("X-Request-Id", fwd.requestId);
      plainText(res, 404, notFoundBody(fwd.host));
      return undefined;
    }
    const settings = entry.settings;
    if (settings.redirectHttps === true && !fwd.secure && fwd.host !== undefined) {
      this.track(req, res, fwd, entry, start, "redirect_https");
      const location = this.httpsLocation(fwd.host, req.url);
      plainText(res, 308, `moved to ${location}\n`, { Location: location, "X-Request-Id": fwd.requestId });
      return undefined;
    }
    if (settings.maintenance === true) {
      this.track(req, res, fwd, entry, start, "maintenance");
      plainText(res, 503, maintenanceBody(entry.app), { "Retry-After": 60, "X-Request-Id": fwd.requestId });
      return undefined;
    }
    return entry;
  }

  /**
   * The app's rate limit for one client: 0 = go ahead (or no limit), else seconds until a request
   * would pass. The app's own rate wins over the server default; its burst defaults to two seconds' worth.
   */
  private rateDecision(entry: RouteEntry, client: string | undefined): RateDecision {
    const settings = entry.settings;
    const rps = settings.rateLimitRps ?? this.limits.rateLimitRps;
    if (rps <= 0) return 0;
    const burst = settings.rateLimitBurst ?? (settings.rateLimitRps !== undefined ? burstForRate(rps) : this.limits.rateLimitBurst);
    return this.rateLimiter.take(entry.app, client ?? "", rps, burst);
  }

  private afterRateLimit(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry, start: number, retryAfter: number): void {
    if (clientGone(res)) return this.count(req, res, fwd, entry, start, "client_gone");
    if (retryAfter > 0) return this.rateLimited(req, res, fwd, entry, start, retryAfter);
    // A deploy may have switched meanwhile: the old processes may be drained and stopped already.
    const now = this.routeFor(req, res, fwd, start);
    if (now !== undefined) this.forward(req, res, fwd, now, start);
  }

  private rateLimited(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry, start: number, retryAfter: number): void {
    this.track(req, res, fwd, entry, start, "rate_limited");
    plainText(res, 429, `too many requests to ${entry.app} from ${req.socket.remoteAddress ?? "your address"}; retry after ${retryAfter}s\n`, { "Retry-After": retryAfter, "X-Request-Id": fwd.requestId });
  }

  /** The last checks before a request goes upstream: body size, then a live upstream (or a wait for one). */
  private forward(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry, start: number): void {
    const maxBody = entry.settings.maxBodyBytes ?? this.limits.maxBodyBytes;
    if (maxBody > 0 && fwd.contentLength > maxBody) {
      this.track(req, res, fwd, entry, start, "body_too_large");
      // The body is not read: the connection closes after the answer.
      if (req.httpVersionMajor === 1) res.shouldKeepAlive = false;
      return plainText(res, 413, `request body of ${fwd.contentLength} bytes is larger than the ${maxBody} bytes ${entry.app} accepts\n`, { "X-Request-Id": fwd.requestId });
    }
    const upstream = RouteTable.pick(entry);
    if (upstream === undefined) {
      if (entry.settings.paused === true && !this.closing) return this.waitForStart(req, res, fwd, entry, start);
      this.track(req, res, fwd, entry, start, "no_release");
      res.setHeader("X-Request-Id", fwd.requestId);
      return plainText(res, 503, `app "${entry.app}" has no running release\n`);
    }
    const exchange = new Exchange(this, req, res, entry, fwd, maxBody);
    if (fwd.hasBody) {
      const pending = this.bodies.get(req);
      if (pending !== undefined) pending.exchange = exchange;
    }
    this.track(req, res, fwd, entry, start, undefined, exchange);
    exchange.send(upstream);
  }

  /** Holds a request for a starting app until its route gets upstreams, or the pause timeout passes. */
  private waitForStart(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry, start: number): void {
    let waiters = this.paused.get(entry.app);
    if (waiters === undefined) {
      waiters = new Set();
      this.paused.set(entry.app, waiters);
    }
    const set = waiters;
    const done = () => {
      clearTimeout(timer);
      set.delete(wake);
      if (set.size === 0 && this.paused.get(entry.app) === set) this.paused.delete(entry.app);
    };
    const wake = () => this.guarded(req, res, () => {
      done();
      if (clientGone(res)) return this.count(req, res, fwd, entry, start, "client_gone");
      if (this.closing) {
        this.track(req, res, fwd, entry, start, "no_release");
        res.setHeader("X-Request-Id", fwd.requestId);
        return plainText(res, 503, `app "${entry.app}" has no running release\n`);
      }
      // Maintenance, redirect-https or a removed domain set while it waited apply to it too.
      const now = this.routeFor(req, res, fwd, start);
      if (now === undefined) return;
      if (now.settings.paused === true && now.upstreams.length === 0) return this.waitForStart(req, res, fwd, now, start);
      this.forward(req, res, fwd, now, start);
    });
    const timer = setTimeout(() => this.guarded(req, res, () => {
      done();
      if (clientGone(res)) return this.count(req, res, fwd, entry, start, "client_gone");
      this.track(req, res, fwd, entry, start, "start_timeout");
      plainText(res, 503, `app "${entry.app}" is starting and did not become ready within ${Math.round(this.limits.pauseTimeoutMs / 1000)}s; try again shortly\n`, { "Retry-After": 5, "X-Request-Id": fwd.requestId });
    }), this.limits.pauseTimeoutMs);
    set.add(wake);
    res.once("close", () => {
      if (!set.has(wake)) return;
      done();
      this.count(req, res, fwd, entry, start, "client_gone");
    });
  }

  private wakePaused(): void {
    if (this.paused.size === 0) return;
    const byApp = this.table.snapshot.byApp;
    for (const [app, waiters] of this.paused) {
      const entry = byApp.get(app);
      if (entry !== undefined && entry.settings.paused === true && entry.upstreams.length === 0) continue;
      for (const wake of [...waiters]) wake();
    }
  }

  /**
   * Counts the request when its response is done (or the client went away): metering by app, and
   * one access-log line. `reason` is set when the router answered itself.
   */
  private track(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry | null, start: number, reason?: string, exchange?: Exchange): void {
    const done = () => this.count(req, res, fwd, entry, start, reason, exchange);
    // A forwarded request's exchange already listens for the close: one listener per request, not two.
    if (exchange !== undefined) exchange.onDone = done;
    else res.once("close", done);
  }

  /** Metering and the access-log line of a request that is over: answered, or given up by its client (499). */
  private count(req: ProxyRequest, res: ProxyResponse, fwd: ForwardHeaders, entry: RouteEntry | null, start: number, reason?: string, exchange?: Exchange): void {
    const status = res.headersSent ? res.statusCode : 499;
    let bytesIn: number;
    let bytesOut: number;
    if (req.httpVersionMajor === 2) {
      [bytesIn, bytesOut] = http2Bytes(req, res as unknown as Http2ServerResponse, exchange);
    } else {
      [bytesIn, bytesOut] = chargeSocket(req.socket as ChargedSocket);
    }
    const ms = performance.now() - start;
    // An exchange's own reason (an app that did not answer …) is counted by the exchange; here it is logged.
    this.counted(req, fwd, entry, status, bytesIn, bytesOut, ms, ms, exchange?.upstreamAddress ?? null, reason, reason ?? exchange?.reason);
  }

  /**
   * Metering and the access-log line of a request that is over. `latencyMs` goes to the histogram
   * (for a tunnel, the time to the app's answer), `durationMs` to the log (a tunnel's whole life);
   * `reason` is counted as a rejection and logged, `logReason` only logged.
   */
  private counted(
    req: ProxyRequest, fwd: ForwardHeaders, entry: RouteEntry | null, status: number, bytesIn: number, bytesOut: number,
    latencyMs: number, durationMs: number, upstream: string | null, reason: string | undefined, logReason = reason,
  ): void {
    const app = entry === null ? null : entry.app;
    if (app !== null) this.metering.record(app, status, bytesIn, bytesOut, latencyMs / 1000);
    if (reason !== undefined) this.metering.reject(app ?? "", reason);
    // The address as the request arrived: an HTTP/2 stream has left its session by the time it closes.
    this.accessLog?.write({
      requestId: fwd.requestId, app, client: fwd.client, method: req.method, host: fwd.host, path: req.url,
      protocol: `HTTP/${req.httpVersion}`, status, bytesIn, bytesOut, durationMs, upstream, reason: logReason,
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

  logLine(line: string): void {
    this.log(line);
  }

  /** Serves a WebSocket (or other Upgrade) request; `secure` as for handleRequest. */
  handleUpgrade(req: ProxyRequest, socket: Duplex, head: Buffer, secure = false): void {
    this.guardedUpgrade(req, socket, () => this.serveUpgrade(req, socket, head, secure));
  }

  /** As guarded(), for an upgrade request: its connection gets the 500, or is closed. */
  private guardedUpgrade(req: ProxyRequest, socket: Duplex, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.internalError(`upgrade ${req.method} ${req.url}`, err);
      if (socket.destroyed) return;
      try {
        socket.resume();
        rawPlainText(socket, 500, "the router failed to serve this request\n");
      } catch {
        socket.destroy();
      }
    }
  }

  private serveUpgrade(req: ProxyRequest, socket: Duplex, head: Buffer, secure: boolean): void {
    const start = performance.now();
    socket.on("error", () => socket.destroy());
    // From here until the app answers, the client's connection is read: its close is noticed.
    const early = new EarlyBytes(socket, head);
    early.watch();
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, true, secure);
    const entry = this.table.lookup(fwd.host);
    // Counted like any request, once the connection closes (a tunnel's bytes are all its own).
    const outcome: UpgradeOutcome = { status: 0, reason: undefined, upstream: null };
    socket.once("close", () => this.trackUpgrade(req, fwd, entry ?? null, start, outcome));
    const refuse = (status: number, reason: string | undefined, body: string, extra?: string) => {
      outcome.status = status;
      outcome.reason = reason;
      early.stop();
      // Read on (and drop) what the client sends, so its close is seen.
      socket.resume();
      rawPlainText(socket, status, body, extra);
    };
    if (entry === undefined) return refuse(404, "unknown_host", notFoundBody(fwd.host));
    const settings = entry.settings;
    if (settings.redirectHttps === true && !secure && fwd.host !== undefined) {
      const location = this.httpsLocation(fwd.host, req.url);
      return refuse(308, "redirect_https", `moved to ${location}\n`, `Location: ${location}\r\n`);
    }
    if (settings.maintenance === true) return refuse(503, "maintenance", maintenanceBody(entry.app), "Retry-After: 60\r\n");
    const go = (retryAfter: number, now: RouteEntry | undefined) => {
      if (socket.destroyed) return;
      if (retryAfter > 0) return refuse(429, "rate_limited", `too many requests to ${entry.app}; retry after ${retryAfter}s\n`, `Retry-After: ${retryAfter}\r\n`);
      if (now === undefined) return refuse(404, "unknown_host", notFoundBody(fwd.host));
      if (now.settings.maintenance === true) return refuse(503, "maintenance", maintenanceBody(now.app), "Retry-After: 60\r\n");
      const upstream = RouteTable.pick(now);
      if (upstream === undefined) return refuse(503, "no_release", `app "${now.app}" has no running release\n`);
      this.openTunnel(req, socket, early, now, fwd, upstream, outcome);
    };
    const decision = this.rateDecision(entry, req.socket.remoteAddress);
    if (typeof decision === "number") return go(decision, entry);
    // A deploy may switch while Redis decides: the tunnel goes to the route as it is then.
    const after = (retryAfter: number) => this.guardedUpgrade(req, socket, () => go(retryAfter, this.table.lookup(fwd.host)));
    decision.then(after, () => after(0));
  }

  /** Metering and the access-log line of an upgrade request, when its connection closes. */
  private trackUpgrade(req: ProxyRequest, fwd: ForwardHeaders, entry: RouteEntry | null, start: number, outcome: UpgradeOutcome): void {
    this.openTunnels.delete(req.socket as ChargedSocket);
    const [bytesIn, bytesOut] = chargeSocket(req.socket as ChargedSocket);
    const now = performance.now();
    this.counted(req, fwd, entry, outcome.status || 499, bytesIn, bytesOut, (outcome.answeredAt ?? now) - start, now - start, outcome.upstream, outcome.reason);
  }

  /** Where a plain-HTTP request to an app with `redirectHttps` is sent. */
  private httpsLocation(host: string, url: string | undefined): string {
    const hostOnly = host.charCodeAt(0) === 91 ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
    return `https://${hostOnly}${this.httpsPort === 443 ? "" : `:${this.httpsPort}`}${url ?? "/"}`;
  }

  private openTunnel(req: ProxyRequest, socket: Duplex, early: EarlyBytes, entry: RouteEntry, fwd: ForwardHeaders, upstream: UpstreamAddress, outcome: UpgradeOutcome, attempt = 0): void {
    outcome.upstream = upstream.address;
    const load = this.loadFor(upstream.address);
    load.inflight++;
    let settled = false;
    const settle = () => {
      if (!settled) { settled = true; load.inflight--; }
    };
    // Its own connection: a tunnel outlives any request and must not come from the shared pool.
    const request = http.request({ host: upstream.host, port: upstream.port, method: req.method, path: req.url, headers: fwd.headers, agent: false, setHost: false });
    const onClientGone = () => { if (!settled) { request.destroy(); settle(); } };
    early.watch();
    socket.once("close", onClientGone);
    const answered = () => {
      settle();
      early.stop();
      socket.off("close", onClientGone);
    };
    /** The app's answer to a declined upgrade is being relayed: a later error cuts it, nothing more. */
    let relaying = false;

    request.on("upgrade", (response: http.IncomingMessage, upstreamSocket: Duplex, upstreamHead: Buffer) => {
      answered();
      outcome.status = response.statusCode ?? 101;
      outcome.answeredAt = performance.now();
      if (socket.destroyed) return void upstreamSocket.destroy();
      let head101 = `HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? "Switching Protocols"}\r\n`;
      const raw = response.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) head101 += `${raw[i]}: ${raw[i + 1]}\r\n`;
      socket.write(`${head101}X-Request-Id: ${fwd.requestId}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      const sent = early.take();
      if (sent.length > 0) upstreamSocket.write(sent);
      this.pipeTunnel(socket, upstreamSocket, load);
      // Its bytes are charged as they go (at each scrape and batch), not only when it closes.
      if (!socket.destroyed) this.openTunnels.set(req.socket as ChargedSocket, entry.app);
    });

    request.on("response", (response: http.IncomingMessage) => {
      // The upstream declined the upgrade: relay its answer and close, since the client expects a tunnel.
      answered();
      relaying = true;
      outcome.status = response.statusCode ?? 0;
      outcome.answeredAt = performance.now();
      // A client that closes its side has given up, here as for any request: the app's answer stops.
      socket.resume();
      socket.once("end", () => socket.destroy());
      socket.once("close", () => response.destroy());
      const { headers } = buildResponseHeaders(response.rawHeaders, fwd.requestId);
      let text = `HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? ""}\r\n`;
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      socket.write(`${text}Connection: close\r\n\r\n`);
      response.pipe(socket);
      response.on("error", () => socket.destroy());
    });

    request.on("error", (err: NodeJS.ErrnoException) => {
      answered();
      if (relaying) return void socket.destroy();
      if (socket.destroyed) return;
      if (attempt === 0 && err.code !== undefined && NOT_CONNECTED.has(err.code)) {
        const next = RouteTable.pick(entry) ?? upstream;
        return this.openTunnel(req, socket, early, entry, fwd, next, outcome, 1);
      }
      this.log(`upgrade ${req.method} ${fwd.host}${req.url} → ${upstream.address} (app ${entry.app}) failed: ${err.code ?? err.message} request_id=${fwd.requestId}`);
      outcome.status = 502;
      socket.resume();
      rawPlainText(socket, 502, `app "${entry.app}" did not answer (bad gateway)\n`);
    });
    request.end();
  }

  private pipeTunnel(client: Duplex, upstream: Duplex, load: UpstreamLoad): void {
    load.tunnels++;
    this.tunnelSockets.add(client);
    this.tunnelSockets.add(upstream);
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      load.tunnels--;
      this.tunnelSockets.delete(client);
      this.tunnelSockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    setNoDelay(client);
    setNoDelay(upstream);
    // WebSocket has its own close handshake, so an end from either side ends the whole tunnel
    // (the HTTP server's sockets allow half-open connections, which would leave it dangling).
    client.allowHalfOpen = false;
    upstream.allowHalfOpen = false;
    client.on("close", close);
    upstream.on("close", close);
    upstream.on("error", close);
    client.on("error", close);
    upstream.pipe(client);
    client.pipe(upstream);
  }
}

function setNoDelay(socket: Duplex): void {
  const s = socket as Duplex & { setNoDelay?: (on: boolean) => void };
  if (typeof s.setNoDelay === "function") s.setNoDelay(true);
}

/** Creates the proxy; call `listen(port, host)` on the result (or use `.server` directly). */
export function createProxyServer(options: ProxyServerOptions): ProxyServer {
  return new ProxyServer(options);
}
