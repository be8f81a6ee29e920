/**
 * The HTTP/1.1 reverse proxy apps are served through (RFC 9110 §7.6 for forwarding, RFC 9112 for
 * framing, RFC 6455 §4 for the WebSocket handshake).
 *
 * This is the hot path: headers are rewritten in one pass over `rawHeaders` (no header object, no
 * URL parsing), bodies are piped in both directions, and upstream connections are pooled by one
 * keep-alive agent.
 */
import http from "node:http";
import type { Duplex } from "node:stream";
import { buildForwardHeaders, buildResponseHeaders, type ForwardHeaders } from "./forward-headers.ts";
import { RouteTable, type RouteEntry, type UpstreamAddress } from "./route-table.ts";

export interface ProxyServerOptions {
  table: RouteTable;
  log?: (line: string) => void;
  /** Idle upstream connections kept per upstream (default 256). */
  maxFreeSockets?: number;
}

/** Live counters for one upstream address; kept across route changes so draining can watch them. */
interface UpstreamLoad {
  inflight: number;
  tunnels: number;
}

/** Errors raised before a single byte reached the upstream: retrying cannot duplicate anything. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);

/** Methods RFC 9110 §9.2.2 calls idempotent. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

function plainText(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function rawPlainText(socket: Duplex, status: number, reason: string, body: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function notFoundBody(host: string | undefined): string {
  return host === undefined ? "no Host header in the request\n" : `no app is configured for host ${JSON.stringify(host)}\n`;
}

export class ProxyServer {
  readonly server: http.Server;
  private readonly table: RouteTable;
  private readonly log: (line: string) => void;
  private readonly agent: http.Agent;
  private readonly loads = new Map<string, UpstreamLoad>();
  private readonly tunnelSockets = new Set<Duplex>();
  private closing = false;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(options: ProxyServerOptions) {
    this.table = options.table;
    this.log = options.log ?? (() => {});
    this.agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: options.maxFreeSockets ?? 256, noDelay: true } as http.AgentOptions);
    this.server = http.createServer({ noDelay: true }, (req, res) => this.handleRequest(req, res));
    this.server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));
    // Counters of upstreams that left the table are dropped once idle; done off the request path.
    this.sweepTimer = setInterval(() => this.sweepLoads(), 30_000);
    this.sweepTimer.unref();
  }

  /** Requests plus WebSocket tunnels currently open to an upstream (`127.0.0.1:PORT`). */
  inflight(upstream: string): number {
    const load = this.loads.get(upstream);
    return load === undefined ? 0 : load.inflight + load.tunnels;
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
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left. */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.sweepTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const until = Date.now() + deadlineMs;
    // Tunnels are long-lived by nature; only plain requests are waited for.
    while (Date.now() < until && this.inflightRequests() > 0) {
      await new Promise((r) => setTimeout(r, 25));
    }
    this.server.closeAllConnections();
    for (const socket of this.tunnelSockets) socket.destroy();
    this.agent.destroy();
    await closed;
  }

  private loadFor(address: string): UpstreamLoad {
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
  }

  private handleRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.closing) res.shouldKeepAlive = false;
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, false);
    const entry = this.table.lookup(fwd.host);
    if (entry === undefined) {
      res.setHeader("X-Request-Id", fwd.requestId);
      return plainText(res, 404, notFoundBody(fwd.host));
    }
    const upstream = RouteTable.pick(entry);
    if (upstream === undefined) {
      res.setHeader("X-Request-Id", fwd.requestId);
      return plainText(res, 503, `app "${entry.app}" has no running release\n`);
    }
    new Exchange(this, req, res, entry, fwd).send(upstream);
  }

  /** Called by an exchange; kept here so the counters and agent stay private to the server. */
  startRequest(upstream: UpstreamAddress, req: http.IncomingMessage, headers: string[]): { request: http.ClientRequest; load: UpstreamLoad } {
    const load = this.loadFor(upstream.address);
    load.inflight++;
    const request = http.request({
      host: upstream.host,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent: this.agent,
      setHost: false,
    });
    return { request, load };
  }

  logLine(line: string): void {
    this.log(line);
  }

  private handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, true);
    const entry = this.table.lookup(fwd.host);
    if (entry === undefined) return rawPlainText(socket, 404, "Not Found", notFoundBody(fwd.host));
    const upstream = RouteTable.pick(entry);
    if (upstream === undefined) return rawPlainText(socket, 503, "Service Unavailable", `app "${entry.app}" has no running release\n`);
    this.openTunnel(req, socket, head, entry, fwd, upstream, 0);
  }

  private openTunnel(req: http.IncomingMessage, socket: Duplex, head: Buffer, entry: RouteEntry, fwd: ForwardHeaders, upstream: UpstreamAddress, attempt: number): void {
    const load = this.loadFor(upstream.address);
    load.inflight++;
    let settled = false;
    const settle = () => {
      if (!settled) { settled = true; load.inflight--; }
    };
    // Its own connection: a tunnel outlives any request and must not come from the shared pool.
    const request = http.request({ host: upstream.host, port: upstream.port, method: req.method, path: req.url, headers: fwd.headers, agent: false, setHost: false });
    const onClientGone = () => { if (!settled) { request.destroy(); settle(); } };
    socket.once("close", onClientGone);

    request.on("upgrade", (response: http.IncomingMessage, upstreamSocket: Duplex, upstreamHead: Buffer) => {
      settle();
      socket.off("close", onClientGone);
      if (socket.destroyed) return void upstreamSocket.destroy();
      let head101 = `HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? "Switching Protocols"}\r\n`;
      const raw = response.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) head101 += `${raw[i]}: ${raw[i + 1]}\r\n`;
      socket.write(`${head101}X-Request-Id: ${fwd.requestId}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      this.pipeTunnel(socket, upstreamSocket, load);
    });

    request.on("response", (response: http.IncomingMessage) => {
      // The upstream declined the upgrade: relay its answer and close, since the client expects a tunnel.
      settle();
      socket.off("close", onClientGone);
      const { headers } = buildResponseHeaders(response.rawHeaders, fwd.requestId);
      let text = `HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? ""}\r\n`;
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      socket.write(`${text}Connection: close\r\n\r\n`);
      response.pipe(socket);
      response.on("error", () => socket.destroy());
    });

    request.on("error", (err: NodeJS.ErrnoException) => {
      settle();
      socket.off("close", onClientGone);
      if (socket.destroyed) return;
      if (attempt === 0 && err.code !== undefined && NOT_CONNECTED.has(err.code)) {
        const next = RouteTable.pick(entry) ?? upstream;
        return this.openTunnel(req, socket, head, entry, fwd, next, 1);
      }
      this.log(`upgrade ${req.method} ${fwd.host}${req.url} → ${upstream.address} (app ${entry.app}) failed: ${err.code ?? err.message} request_id=${fwd.requestId}`);
      rawPlainText(socket, 502, "Bad Gateway", `app "${entry.app}" did not answer (bad gateway)\n`);
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

/**
 * One client request on its way through the proxy. At most two attempts: the second only when the
 * first provably delivered nothing (connect failure) or hit a stale pooled connection on a
 * body-less idempotent request.
 */
class Exchange {
  private attempt = 0;
  private request: http.ClientRequest | undefined;
  private load: UpstreamLoad | undefined;
  private settled = true;
  private clientGone = false;
  private upstream: UpstreamAddress | undefined;

  constructor(
    private readonly proxy: ProxyServer,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
    private readonly entry: RouteEntry,
    private readonly fwd: ForwardHeaders,
  ) {
    res.once("close", () => this.onClientClose());
  }

  send(upstream: UpstreamAddress): void {
    this.upstream = upstream;
    const { request, load } = this.proxy.startRequest(upstream, this.req, this.fwd.headers);
    this.request = request;
    this.load = load;
    this.settled = false;
    request.once("response", (response: http.IncomingMessage) => this.onResponse(request, response));
    request.once("error", (err: NodeJS.ErrnoException) => this.onError(request, err));
    if (!this.fwd.hasBody) {
      request.end();
      return;
    }
    // Hold the body until the connection exists, so a refused connect leaves it unread and retryable.
    request.once("socket", (socket) => {
      if (socket.connecting) socket.once("connect", () => this.req.pipe(request));
      else this.req.pipe(request);
    });
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.load!.inflight--;
  }

  private onResponse(request: http.ClientRequest, response: http.IncomingMessage): void {
    const res = this.res;
    if (this.clientGone) {
      request.destroy();
      return this.settle();
    }
    const { headers, hasLength } = buildResponseHeaders(response.rawHeaders, this.fwd.requestId);
    res.writeHead(response.statusCode ?? 502, response.statusMessage, headers);
    // Streams of unknown length (server-sent events, chunked) must reach the client before the body ends.
    if (!hasLength) res.flushHeaders();
    response.once("end", () => this.settle());
    response.once("close", () => {
      this.settle();
      if (!response.complete && !res.destroyed) res.destroy();
    });
    response.pipe(res);
  }

  private onError(request: http.ClientRequest, err: NodeJS.ErrnoException): void {
    this.settle();
    if (this.clientGone || request !== this.request) return;
    const res = this.res;
    if (this.attempt === 0 && !res.headersSent && this.isRetryable(request, err)) {
      this.attempt = 1;
      const next = RouteTable.pick(this.entry) ?? this.upstream!;
      return this.send(next);
    }
    const req = this.req;
    this.proxy.logLine(`${req.method} ${this.fwd.host}${req.url} → ${this.upstream!.address} (app ${this.entry.app}) failed: ${err.code ?? err.message} request_id=${this.fwd.requestId}`);
    if (res.headersSent) {
      res.destroy();
    } else {
      res.setHeader("X-Request-Id", this.fwd.requestId);
      res.shouldKeepAlive = false;
      plainText(res, 502, `app "${this.entry.app}" did not answer (bad gateway)\n`);
    }
  }

  private isRetryable(request: http.ClientRequest, err: NodeJS.ErrnoException): boolean {
    if (err.code !== undefined && NOT_CONNECTED.has(err.code)) return true;
    // A pooled connection the upstream closed while idle: nothing was processed, but only a
    // body-less idempotent request can be sent again (a body has already been consumed).
    return request.reusedSocket && err.code === "ECONNRESET" && !this.fwd.hasBody && IDEMPOTENT.has(this.req.method ?? "");
  }

  private onClientClose(): void {
    if (this.res.writableFinished) return;
    this.clientGone = true;
    if (!this.settled) {
      this.request?.destroy();
      this.settle();
    }
  }
}

/** Creates the proxy; call `listen(port, host)` on the result (or use `.server` directly). */
export function createProxyServer(options: ProxyServerOptions): ProxyServer {
  return new ProxyServer(options);
}
