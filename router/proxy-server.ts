/**
 * The HTTP/1.1 reverse proxy apps are served through (RFC 9110 §7.6 for forwarding, RFC 9112 for
 * framing, RFC 6455 §4 for the WebSocket handshake), and the parts it is made of:
 *
 * - client-admission.ts: the per-address connection cap and the slow and idle client timeouts;
 * - client-connection.ts: the router's own HTTP/1.1 server side, one object per connection;
 * - request-flow.ts: a request down the routing ladder (request-decision.ts, one pure `decide()`
 *   shared with upgrades) to an answer, a wait (paused-starts.ts) or the app (exchange.ts);
 * - upgrade-flow.ts and tunnel.ts: upgrade handshakes and the tunnels they become;
 * - upstream-registry.ts: keep-alive pools and in-flight counts per app process;
 * - request-recorder.ts: metering and the access log; body-deadlines.ts: the body timeout;
 * - bandwidth-throttle.ts: the response bandwidth of apps with a limit.
 *
 * This is the hot path: requests are read and answered by the router's own HTTP/1.1 code, headers
 * are rewritten in one pass over `rawHeaders` (no header object, no URL parsing), bodies stream in
 * both directions, and upstream connections are pooled per address.
 */
import net, { type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { listenOn } from "../core/index.ts";
import type { AccessLog } from "./access-log.ts";
import { AcmeChallenges } from "./acme-challenges.ts";
import { BandwidthThrottle } from "./bandwidth-throttle.ts";
import { ClientAdmission } from "./client-admission.ts";
import { ClientConnection, type ConnectionHost } from "./client-connection.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import { DEFAULT_LIMITS, LocalRateLimiter, type RateLimiter, type RouterLimits } from "./limits.ts";
import { Metering } from "./metering.ts";
import type { ProxyContext } from "./proxy-context.ts";
import { RequestFlow } from "./request-flow.ts";
import { logInternalError } from "./request-guard.ts";
import { RequestRecorder } from "./request-recorder.ts";
import type { RouteTable } from "./route-table.ts";
import { UpgradeFlow } from "./upgrade-flow.ts";
import { UpstreamRegistry } from "./upstream-registry.ts";

export { INTERNAL_ERROR } from "./request-guard.ts";

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
  /** The value of `X-Deck-Probe` deck's uptime checks carry (DECK_PROBE_TOKEN): such requests are logged, not metered. */
  probeToken?: string;
  /** The HTTPS port, for redirects of apps with `redirectHttps` (443 = no port in the URL). */
  httpsPort?: number;
}

/** Whether the proxy takes new requests. */
type ProxyState = "serving" | "closing";

export class ProxyServer implements ConnectionHost {
  readonly server: net.Server;
  readonly limits: RouterLimits;
  readonly metering: Metering;
  /** The response bandwidth buckets of apps with a limit (bandwidthBytesPerSecond). */
  readonly bandwidth = new BandwidthThrottle();
  /** ACME HTTP-01 answers, served for any Host before route lookup (set through the control API). */
  readonly challenges = new AcmeChallenges();
  private state: ProxyState = "serving";
  private readonly ctx: ProxyContext;
  private readonly upstreams: UpstreamRegistry;
  private readonly admission: ClientAdmission;
  private readonly requests: RequestFlow;
  private readonly upgrades: UpgradeFlow;
  private readonly accessLog: AccessLog | undefined;
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly forgetTimer: NodeJS.Timeout;

  constructor(options: ProxyServerOptions) {
    const table = options.table;
    const log = options.log ?? (() => {});
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.accessLog = options.accessLog;
    this.upstreams = new UpstreamRegistry(options.maxIdlePerUpstream ?? 256);
    this.metering = new Metering(
      { connections: () => this.admission.open, inflight: () => this.upstreams.totalInflight() },
      () => this.upgrades.chargeOpen(),
    );
    const recorder = new RequestRecorder(this.metering, this.accessLog, options.probeToken ?? process.env.DECK_PROBE_TOKEN);
    this.ctx = {
      table, limits: this.limits, policy: { limits: this.limits, httpsPort: options.httpsPort ?? 443 },
      rateLimiter: options.rateLimiter ?? new LocalRateLimiter(), upstreams: this.upstreams, metering: this.metering,
      bandwidth: this.bandwidth, recorder, log,
      closing: () => this.state === "closing",
    };
    this.admission = new ClientAdmission(this.limits, this.metering, recorder);
    this.requests = new RequestFlow(this.ctx, this.challenges);
    this.upgrades = new UpgradeFlow(this.ctx);
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    // Slow clients, idle connections, bodies past their timeout and idle upstream connections are all
    // checked once a second (or more often, for shorter limits).
    const bodyTimeout = this.limits.bodyTimeoutMs > 0 ? this.limits.bodyTimeoutMs : Infinity;
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1000, this.limits.idleTimeoutMs, this.limits.headerTimeoutMs, bodyTimeout));
    this.sweepTimer.unref();
    table.onChange(() => {
      this.requests.paused.wakeReady(table.snapshot);
      this.upstreams.retireUnrouted(table.snapshot);
      this.bandwidth.retainLimited(table.snapshot);
    });
    // Counters of upstreams that left the table are dropped once idle; done off the request path.
    this.forgetTimer = setInterval(() => this.upstreams.forgetUnused(), 30_000);
    this.forgetTimer.unref();
  }

  private accept(socket: Socket): void {
    if (!this.admission.admit(socket, true)) return;
    this.admission.clients.add(new ClientConnection(this, socket, this.ctx.closing));
  }

  private sweep(): void {
    const now = Date.now();
    this.upstreams.sweepIdle(now);
    this.requests.bodies.sweep(now);
    this.admission.sweep(now);
    this.bandwidth.sweep();
  }

  /**
   * Counts a new client connection against its address's cap; over the cap it gets a 429 and is
   * closed. The HTTPS front end calls this for its connections too. False = refused.
   */
  admitConnection(socket: Socket, plain = true): boolean {
    return this.admission.admit(socket, plain);
  }

  /**
   * Serves one client request. `secure` is true when it arrived over TLS (the HTTPS front end calls
   * this too, with HTTP/2 compatibility objects for h2 connections).
   */
  handleRequest(req: ProxyRequest, res: ProxyResponse, secure = false): void {
    this.requests.handle(req, res, secure);
  }

  /** Serves a WebSocket (or other Upgrade) request; `secure` as for handleRequest. */
  handleUpgrade(req: ProxyRequest, socket: Duplex, head: Buffer, secure = false): void {
    this.upgrades.handle(req, socket, head, secure);
  }

  connectionClosed(conn: ClientConnection): void {
    this.admission.clients.delete(conn);
  }

  /** A request the router answered before it could read it (see RequestRecorder.refused). */
  refused(socket: Pick<Socket, "remoteAddress">, status: number, reason: string, protocol = "HTTP/1.1"): void {
    this.ctx.recorder.refused(socket, status, reason, protocol);
  }

  /** Logs an exception caught while serving `what` (stack included: it is a bug to fix). */
  internalError(what: string, err: unknown): void {
    logInternalError(this.ctx.log, what, err);
  }

  /** Requests plus WebSocket tunnels currently open to an upstream (`127.0.0.1:PORT`). */
  inflight(upstream: string): number {
    return this.upstreams.inflight(upstream);
  }

  /** Requests plus tunnels in flight per upstream, for upstreams that have any. */
  inflightByUpstream(): Record<string, number> {
    return this.upstreams.inflightByUpstream();
  }

  /** Total requests and tunnels in flight across all upstreams. */
  totalInflight(): number {
    return this.upstreams.totalInflight();
  }

  listen(port: number, host: string): Promise<void> {
    return listenOn(this.server, port, host);
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left. */
  async close(deadlineMs: number): Promise<void> {
    this.state = "closing";
    clearInterval(this.forgetTimer);
    clearInterval(this.sweepTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of this.admission.clients) conn.closeIfIdle();
    // Requests held for a starting app get their 503 now: nothing will start behind a closing router.
    this.requests.paused.wakeAll();
    const until = Date.now() + deadlineMs;
    // Tunnels are long-lived by nature; only plain requests are waited for.
    while (Date.now() < until && this.upstreams.requestsInFlight() > 0) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const conn of this.admission.clients) conn.socket.destroy();
    this.upgrades.closeAll();
    this.upstreams.closeIdle();
    await this.ctx.rateLimiter.close();
    await closed;
    await this.accessLog?.close();
  }
}

/** Creates the proxy; call `listen(port, host)` on the result (or use `.server` directly). */
export function createProxyServer(options: ProxyServerOptions): ProxyServer {
  return new ProxyServer(options);
}
