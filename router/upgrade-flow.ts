/**
 * Upgrade requests (WebSocket, RFC 6455 §4): the handshake takes the same routing ladder as any
 * request (request-decision.ts), then goes to the app over a connection of its own (tunnel.ts). It
 * is metered and logged once its connection closes, the tunnel's bytes included; an open tunnel's
 * bytes are charged as they go, at each scrape and batch.
 */
import type { Duplex } from "node:stream";
import type { ProxyRequest } from "./client-messages.ts";
import { EarlyBytes } from "./early-bytes.ts";
import { buildForwardHeaders } from "./forward-headers.ts";
import { rawPlainText } from "./plain-answers.ts";
import type { ProxyContext } from "./proxy-context.ts";
import { decide, type Answer } from "./request-decision.ts";
import { guardUpgrade } from "./request-guard.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";
import { chargeSocket, type ChargedSocket } from "./socket-charge.ts";
import { Tunnel, type Handshake, type TunnelHost } from "./tunnel.ts";

export class UpgradeFlow implements TunnelHost {
  /** Open tunnels, with their client's socket and app: charged at each scrape and batch, cut when the router closes. */
  private readonly open = new Map<Tunnel, { socket: ChargedSocket; app: string }>();

  constructor(private readonly ctx: ProxyContext) {}

  get upstreams(): ProxyContext["upstreams"] {
    return this.ctx.upstreams;
  }

  get log(): ProxyContext["log"] {
    return this.ctx.log;
  }

  /** Serves an upgrade request; `secure` when it arrived over TLS. */
  handle(req: ProxyRequest, socket: Duplex, head: Buffer, secure: boolean): void {
    guardUpgrade(this.ctx.log, req, socket, () => this.serve(req, socket, head, secure));
  }

  private serve(req: ProxyRequest, socket: Duplex, head: Buffer, secure: boolean): void {
    const start = performance.now();
    socket.on("error", () => socket.destroy());
    // From here until the app answers, the client's connection is read: its close is noticed.
    const early = new EarlyBytes(socket, head);
    early.watch();
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, true, secure);
    const entry = this.ctx.table.lookup(fwd.host);
    const handshake: Handshake = { req, socket, fwd, start, early, status: 0, reason: undefined, upstream: null, answeredAt: undefined };
    // Counted like any request, once the connection closes (a tunnel's bytes are all its own).
    socket.once("close", () => this.record(handshake, entry ?? null));
    this.proceed(handshake, entry, undefined);
  }

  /** Takes the handshake down the routing ladder; after a wait, with the route as the table has it then. */
  private proceed(h: Handshake, entry: RouteEntry | undefined, retryAfter: number | undefined): void {
    if (h.socket.destroyed) return;
    const { req, fwd } = h;
    const ctx = this.ctx;
    const decision = decide({
      entry, host: fwd.host, url: req.url, secure: fwd.secure, client: fwd.client, contentLength: fwd.contentLength,
      retryAfter, upgrade: true, closing: ctx.closing(),
    }, ctx.policy);
    switch (decision.kind) {
      case "answer":
        return this.refuse(h, decision);
      case "ask-rate-limiter": {
        const verdict = ctx.rateLimiter.take(decision.app, decision.client, decision.rps, decision.burst);
        if (typeof verdict === "number") return this.proceed(h, entry, verdict);
        // A deploy may switch while a shared limiter decides: the tunnel goes to the route as it is then.
        const after = (n: number) => guardUpgrade(ctx.log, req, h.socket, () => this.proceed(h, ctx.table.lookup(fwd.host), n));
        return void verdict.then(after, () => after(0));
      }
      case "hold":
        throw new Error("an upgrade handshake is never held for a starting app");
      case "forward":
        return new Tunnel(this, h, entry!).open(RouteTable.pick(entry!)!);
    }
  }

  /** The router answers the handshake itself; the connection closes after the answer. */
  private refuse(h: Handshake, answer: Answer): void {
    h.status = answer.status;
    h.reason = answer.reason;
    h.early.stop();
    // Read on (and drop) what the client sends, so its close is seen.
    h.socket.resume();
    let extra = "";
    for (const name in answer.headers) extra += `${name}: ${answer.headers[name]}\r\n`;
    rawPlainText(h.socket, answer.status, answer.body, extra);
  }

  /** Metering and the access-log line of an upgrade request, when its connection closes. */
  private record(h: Handshake, entry: RouteEntry | null): void {
    const [bytesIn, bytesOut] = chargeSocket(h.req.socket as ChargedSocket);
    const now = performance.now();
    this.ctx.recorder.record({
      req: h.req, fwd: h.fwd, app: entry === null ? null : entry.app, status: h.status || 499, bytesIn, bytesOut,
      latencyMs: (h.answeredAt ?? now) - h.start, durationMs: now - h.start, upstream: h.upstream, reason: h.reason,
    });
  }

  opened(tunnel: Tunnel, app: string): void {
    this.open.set(tunnel, { socket: tunnel.handshake.req.socket as ChargedSocket, app });
  }

  closed(tunnel: Tunnel): void {
    this.open.delete(tunnel);
  }

  /** Charges open tunnels the bytes they moved since they were last charged. */
  chargeOpen(): void {
    for (const { socket, app } of this.open.values()) {
      const [bytesIn, bytesOut] = chargeSocket(socket);
      this.ctx.metering.addBytes(app, bytesIn, bytesOut);
    }
  }

  /** Cuts every open tunnel (the router is stopping). */
  closeAll(): void {
    for (const tunnel of [...this.open.keys()]) tunnel.close();
  }
}
