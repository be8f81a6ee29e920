/**
 * One upgrade handshake on its way to the app, then the tunnel it becomes (RFC 9110 §7.8, RFC 6455
 * §4), over the router's own upstream client (upstream-pool.ts, upstream-response.ts). A tunnel
 * outlives any request, so it has a connection of its own, never one from the pool; a refused
 * connection is tried again on the app's next process (upstream-retry.ts, as for requests).
 *
 * The app answers 101 and the tunnel opens: bytes pass both ways until either side closes (WebSocket
 * has its own close handshake, so an end from either side ends the tunnel). Any other answer is
 * relayed and the connection closed, since the client expected a tunnel.
 */
import type { Duplex } from "node:stream";
import type { ProxyRequest } from "./client-messages.ts";
import type { EarlyBytes } from "./early-bytes.ts";
import { buildResponseHeaders, formatRequestHead, type ForwardHeaders } from "./forward-headers.ts";
import { rawPlainText } from "./plain-answers.ts";
import { RouteTable, type RouteEntry, type UpstreamAddress } from "./route-table.ts";
import type { ConnectionOwner, UpstreamConnection } from "./upstream-pool.ts";
import type { UpstreamLoad, UpstreamRegistry } from "./upstream-registry.ts";
import type { ResponseHead } from "./upstream-response.ts";
import { mayRetry } from "./upstream-retry.ts";

/** An upgrade request while it is served, and how it ended (for its metering and log line). */
export interface Handshake {
  readonly req: ProxyRequest;
  /** The client's connection, out of HTTP. */
  readonly socket: Duplex;
  readonly fwd: ForwardHeaders;
  /** When it arrived (performance.now()). */
  readonly start: number;
  readonly early: EarlyBytes;
  /** The status the client got (101 for a tunnel); 0 while there is none. */
  status: number;
  /** Why the router answered itself. */
  reason: string | undefined;
  upstream: string | null;
  /** When the app answered (performance.now()); the latency histogram's sample. */
  answeredAt: number | undefined;
}

/** What a tunnel needs from the proxy. */
export interface TunnelHost {
  readonly upstreams: Pick<UpstreamRegistry, "poolFor" | "loadFor">;
  readonly log: (line: string) => void;
  /** The app accepted: the tunnel is open, its bytes are charged to `app` as they go. */
  opened(tunnel: Tunnel, app: string): void;
  closed(tunnel: Tunnel): void;
}

/**
 * - "idle": not sent yet (or between a refused connection and the retry);
 * - "handshake": sent to the app, no answer yet (counted in flight to it);
 * - "open": the app answered 101; bytes pass both ways (counted as a tunnel);
 * - "declined": the app answered otherwise; its answer is relayed;
 * - "over": nothing more happens (closed, answered, failed, or the client left).
 */
type TunnelPhase = "idle" | "handshake" | "open" | "declined" | "over";

export class Tunnel implements ConnectionOwner {
  private phase: TunnelPhase = "idle";
  private conn: UpstreamConnection | null = null;
  private upstream: UpstreamAddress | undefined;
  private load: UpstreamLoad | undefined;
  private retries = 0;
  /** The client left before the app answered: the app's side goes too. */
  private readonly onClientGone = () => this.moveTo("over");

  constructor(private readonly host: TunnelHost, readonly handshake: Handshake, private readonly entry: RouteEntry) {}

  /** Sends the handshake to `upstream`, on a new connection. */
  open(upstream: UpstreamAddress): void {
    const { req, fwd } = this.handshake;
    this.upstream = upstream;
    this.handshake.upstream = upstream.address;
    this.load = this.host.upstreams.loadFor(upstream.address);
    const conn = this.host.upstreams.poolFor(upstream).dedicated();
    this.conn = conn;
    conn.owner = this;
    conn.uses++;
    conn.parser.reset(this, req.method === "HEAD", true);
    // Read by an HTTP/1.1 parser already (the router's own, or Node's over TLS): nothing to check.
    conn.socket.write(formatRequestHead(req.method ?? "GET", req.url ?? "/", fwd.headers, false)!, "latin1");
    this.moveTo("handshake");
  }

  /**
   * Moves to `next`: what leaving the current phase and entering the next take (the in-flight and
   * tunnel counts, watching the client, the app's connection) happens here and nowhere else.
   */
  private moveTo(next: TunnelPhase): void {
    const was = this.phase;
    if (was === next || was === "over") return;
    this.phase = next;
    const { socket, early } = this.handshake;
    if (was === "handshake") {
      this.load!.inflight--;
      early.stop();
      socket.off("close", this.onClientGone);
    } else if (was === "open") {
      this.load!.tunnels--;
      this.host.closed(this);
    }
    if (next === "handshake") {
      this.load!.inflight++;
      // Until the app answers, the client's connection is read: its close is noticed.
      early.watch();
      socket.once("close", this.onClientGone);
    } else if (next === "open") {
      this.load!.tunnels++;
    } else if (next === "over") {
      // A tunnel ends whole.
      if (was === "open") socket.destroy();
      this.dropConnection();
    }
  }

  onHead(head: ResponseHead): void {
    if (this.phase !== "handshake") return;
    const h = this.handshake;
    h.status = head.status;
    h.answeredAt = performance.now();
    if (head.status === 101) return this.accept(head);
    this.decline(head);
  }

  /** The app switched protocols: its answer goes to the client and the bytes start to flow. */
  private accept(head: ResponseHead): void {
    const { socket: client, early, fwd } = this.handshake;
    if (client.destroyed) return this.moveTo("over");
    this.moveTo("open");
    let text = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
    const raw = head.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
    client.write(`${text}X-Request-Id: ${fwd.requestId}\r\n\r\n`);
    const upstream = this.conn!.socket;
    const sent = early.take();
    if (sent.length > 0) upstream.write(sent);
    client.on("close", () => this.moveTo("over"));
    client.on("error", () => this.moveTo("over"));
    setNoDelay(client);
    // An end from the client ends the tunnel (the HTTP server's sockets allow half-open connections,
    // which would leave it dangling); the app's end closes its connection, and so the tunnel.
    client.allowHalfOpen = false;
    client.pipe(upstream);
    // Its bytes are charged as they go (at each scrape and batch), not only when it closes.
    if (this.phase === "open") this.host.opened(this, this.entry.app);
  }

  /** The app declined the upgrade: its answer is relayed, then the connection closes. */
  private decline(head: ResponseHead): void {
    const { socket: client, fwd } = this.handshake;
    this.moveTo("declined");
    // A client that closes its side has given up, here as for any request: the app's answer stops.
    client.resume();
    client.once("end", () => client.destroy());
    client.once("close", () => this.moveTo("over"));
    const { headers } = buildResponseHeaders(head.rawHeaders, fwd.requestId);
    let text = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    client.write(`${text}Connection: close\r\n\r\n`);
  }

  /** A piece of the declined answer's body, or (open) bytes from the app. */
  onBody(chunk: Buffer, _last: boolean): void {
    if (chunk.length === 0 || (this.phase !== "open" && this.phase !== "declined")) return;
    const client = this.handshake.socket;
    const upstream = this.conn!.socket;
    if (!client.write(chunk) && !upstream.isPaused()) {
      upstream.pause();
      client.once("drain", () => upstream.resume());
    }
  }

  /** The declined answer is complete. */
  onEnd(): void {
    if (this.phase !== "declined") return;
    this.handshake.socket.end();
    this.moveTo("over");
  }

  onConnect(): void {}
  onDrain(): void {}
  onRead(): void {}

  onProtocolError(err: Error): void {
    this.conn = null;
    this.failed(err.message, `app "${this.entry.app}" sent a malformed response (bad gateway)\n`);
  }

  onClose(err: NodeJS.ErrnoException | undefined): void {
    const conn = this.conn;
    this.conn = null;
    if (this.phase === "open") return this.moveTo("over");
    const why = err?.code ?? err?.message ?? "connection closed before the answer was complete";
    if (this.phase !== "handshake" || conn === null) return this.failed(why, "");
    const h = this.handshake;
    const retry = mayRetry({ retries: this.retries, answered: false, errorCode: err?.code, reused: false, bytesReceived: conn.parser.received, method: h.req.method, hasBody: false });
    if (retry && !h.socket.destroyed) {
      this.moveTo("idle");
      this.retries++;
      return this.open(RouteTable.pick(this.entry) ?? this.upstream!);
    }
    this.failed(why, `app "${this.entry.app}" did not answer (bad gateway)\n`);
  }

  /** The app's side failed: 502 if the client got nothing yet, else its connection is cut. */
  private failed(why: string, page: string): void {
    const was = this.phase;
    this.moveTo("over");
    const h = this.handshake;
    if (was === "declined") return void h.socket.destroy();
    if (was !== "handshake") return;
    if (h.socket.destroyed) return;
    const req = h.req;
    this.host.log(`upgrade ${req.method} ${h.fwd.host}${req.url} → ${this.upstream!.address} (app ${this.entry.app}) failed: ${why} request_id=${h.fwd.requestId}`);
    h.status = 502;
    h.socket.resume();
    rawPlainText(h.socket, 502, page);
  }

  private dropConnection(): void {
    const conn = this.conn;
    if (conn === null) return;
    this.conn = null;
    conn.destroy();
  }

  /** Closes both sides of an open tunnel (the router is stopping). */
  close(): void {
    if (this.phase === "open") this.moveTo("over");
  }
}

function setNoDelay(socket: Duplex): void {
  const s = socket as Duplex & { setNoDelay?: (on: boolean) => void };
  if (typeof s.setNoDelay === "function") s.setNoDelay(true);
}
