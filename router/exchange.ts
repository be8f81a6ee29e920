/**
 * One client request on its way through the proxy, over a pooled upstream connection (see
 * upstream-pool.ts): the request head is written in one piece, the body streamed after it (re-framed
 * as chunked when its length is unknown), and the response relayed as it is read, with backpressure
 * both ways.
 *
 * At most two attempts, as upstream-retry.ts allows (the same policy as for upgrade handshakes).
 *
 * HTTP/2 requests (tls-server.ts) are exchanges too, so the same backpressure and bandwidth limit
 * (bandwidth-throttle.ts) apply to them; upgraded connections are tunnels (tunnel.ts), not exchanges.
 */
import type { BandwidthThrottle } from "./bandwidth-throttle.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import type { Metering } from "./metering.ts";
import type { InboundRequest } from "./proxy-context.ts";
import { buildResponseHeaders, formatRequestHead, type ForwardHeaders } from "./forward-headers.ts";
import { plainText } from "./plain-answers.ts";
import { RouteTable, type RouteEntry, type UpstreamAddress } from "./route-table.ts";
import type { ConnectionOwner, UpstreamConnection } from "./upstream-pool.ts";
import type { UpstreamLoad, UpstreamRegistry } from "./upstream-registry.ts";
import type { ResponseHead } from "./upstream-response.ts";
import { mayRetry } from "./upstream-retry.ts";

/** What an exchange needs from the proxy that runs it. */
export interface ExchangeHost {
  readonly upstreams: Pick<UpstreamRegistry, "poolFor" | "loadFor">;
  readonly metering: Metering;
  /** The buckets of apps with a bandwidth limit, shared by all exchanges of the process. */
  readonly bandwidth: BandwidthThrottle;
  readonly log: (line: string) => void;
}

/** HSTS value for apps that opt in: a year, subdomains included (RFC 6797 §6.1). */
const HSTS_VALUE = "max-age=31536000; includeSubDomains";

/** Bytes buffered for a slow reader (client or upstream) before the other side is paused. */
const RESPONSE_BUFFER_BYTES = 256 * 1024;

const CRLF = "\r\n";
const LAST_CHUNK = "0\r\n\r\n";

/**
 * The answer's side of an exchange:
 * - "idle": not sent yet (or between a failed attempt and its retry);
 * - "awaiting": sent; no answer yet (counted in flight to the upstream);
 * - "relaying": the app's answer head was passed on and its body streams (still counted);
 * - "complete": the whole answer was passed on;
 * - "refused": the router answered (or cut) the request itself: a field it cannot forward, a body
 *   too large or too slow;
 * - "failed": the app failed it (502, or the answer cut);
 * - "abandoned": the client left first.
 */
type ExchangePhase = "idle" | "awaiting" | "relaying" | "complete" | "refused" | "failed" | "abandoned";

/**
 * The request body's side, which moves on its own (an app may answer before it read an upload):
 * - "waiting": it waits for the connection (a refused connection leaves it unread, so retryable);
 * - "flowing": it streams to the app (listeners on the client's request are set);
 * - "sent": the whole request, body or none, was written;
 * - "stopped": the rest will not be sent (the answer came first, or the request ended otherwise).
 */
type BodyPhase = "waiting" | "flowing" | "sent" | "stopped";

/**
 * Why the app's connection is not read while its answer is relayed:
 * - "reading": it is read;
 * - "client": the client is slow; its drain resumes reading;
 * - "bandwidth": the app is over its bandwidth limit; the throttle timer resumes reading;
 * - "both": the later of the two resumes reading.
 * Only an answer being relayed pauses its connection, and a connection the exchange let go is never
 * resumed by it, so the hold need not be reset when the connection changes.
 */
type UpstreamHold = "reading" | "client" | "bandwidth" | "both";

export interface ExchangeOptions {
  readonly request: InboundRequest;
  readonly entry: RouteEntry;
  /** Largest body accepted (0 = no limit); only a chunked body needs counting, a declared one was checked. */
  readonly maxBody: number;
}

export class Exchange implements ConnectionOwner {
  private phase: ExchangePhase = "idle";
  private body: BodyPhase = "waiting";
  private attempt = 0;
  private conn: UpstreamConnection | null = null;
  private load: UpstreamLoad | undefined;
  private upstream: UpstreamAddress | undefined;
  private head: string | undefined;
  /** The status of the app's answer once its head was passed on; 0 before. */
  private relayedStatus = 0;
  /** The answer's head says the connection may carry another request, and for how long (-1: not said). */
  private keepAlive = false;
  private keepAliveTimeout = -1;
  /** The answer has no length: its head is flushed once the read that brought it is handled. */
  private flushPending = false;
  private bodySeen = 0;
  private readonly req: ProxyRequest;
  private readonly res: ProxyResponse;
  private readonly fwd: ForwardHeaders;
  private readonly entry: RouteEntry;
  private readonly maxBody: number;
  /** Request body bytes read from the client, and response body bytes passed to it (HTTP/2 metering counts these). */
  bodyBytesIn = 0;
  bodyBytesOut = 0;
  /** Why the router ended the exchange itself (for the access log), e.g. body_too_large. */
  reason: string | undefined;
  /** When the app's response head arrived (performance.now()): the latency histogram's sample. */
  headAt: number | undefined;
  /** When the client's request body was all read and passed on (performance.now()); unset for a request without one. */
  bodyDoneAt: number | undefined;
  /** Called once the client's response is finished or abandoned (metering, access log). */
  onDone: (() => void) | undefined;
  private hold: UpstreamHold = "reading";
  /** Ends the wait of an app over its bandwidth limit; unset when none. */
  private throttleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly host: ExchangeHost, options: ExchangeOptions) {
    const { req, res, fwd } = options.request;
    this.req = req;
    this.res = res;
    this.fwd = fwd;
    this.entry = options.entry;
    this.maxBody = options.maxBody;
    res.once("close", () => {
      this.onClientClose();
      this.onDone?.();
    });
  }

  /** The app's response head was passed on to the client (its body is then counted in bodyBytesOut). */
  get relayed(): boolean {
    return this.relayedStatus !== 0;
  }

  get upstreamAddress(): string | null {
    return this.upstream?.address ?? null;
  }

  /**
   * The one place the answer's phase changes. The in-flight count follows it, and an exchange the
   * router or the client ended lets its request body and its app connection go.
   */
  private moveTo(next: ExchangePhase): void {
    const was = this.phase;
    this.phase = next;
    const wasActive = was === "awaiting" || was === "relaying";
    const active = next === "awaiting" || next === "relaying";
    if (active && !wasActive) this.load!.inflight++;
    else if (wasActive && !active) {
      this.load!.inflight--;
      if (this.throttleTimer !== undefined) this.endThrottleWait();
    }
    if (next === "refused" || next === "failed" || next === "abandoned") {
      this.moveBody("stopped");
      this.dropConnection();
    }
  }

  /** The one place the body's phase changes: its listeners on the client's request are set and taken off here. */
  private moveBody(next: BodyPhase): void {
    const was = this.body;
    if (was === next || was === "sent" || was === "stopped") return;
    this.body = next;
    if (next === "flowing") {
      const listeners = (this.bodyListeners ??= { data: (chunk) => this.onBodyData(chunk), end: () => this.onBodyEnd() });
      this.req.on("data", listeners.data);
      this.req.once("end", listeners.end);
    } else if (was === "flowing") {
      this.req.off("data", this.bodyListeners!.data);
      this.req.off("end", this.bodyListeners!.end);
    }
  }

  /** The body listeners, made only for requests that have a body. */
  private bodyListeners: { data: (chunk: Buffer) => void; end: () => void } | undefined;

  send(upstream: UpstreamAddress): void {
    if (this.head === undefined) {
      // HTTP/1.1 requests were checked by a parser; HTTP/2 ones arrive as free-form strings.
      const req = this.req;
      const head = formatRequestHead(req.method ?? "GET", req.url ?? "/", this.fwd.headers, req.httpVersionMajor === 2);
      if (head === null) {
        this.moveTo("refused");
        this.res.setHeader("X-Request-Id", this.fwd.requestId);
        return plainText(this.res, 400, "request has a line break in a header field\n");
      }
      this.head = head;
    }
    this.upstream = upstream;
    this.load = this.host.upstreams.loadFor(upstream.address);
    const conn = this.host.upstreams.poolFor(upstream).acquire();
    this.conn = conn;
    conn.owner = this;
    conn.uses++;
    conn.parser.reset(this, this.req.method === "HEAD");
    this.moveTo("awaiting");
    // Node reads header bytes as Latin-1 strings: written back the same way, every byte arrives as sent.
    conn.socket.write(this.head, "latin1");
    if (!this.fwd.hasBody) return this.moveBody("sent");
    // The body waits for the connection, so a refused connect leaves it unread and retryable.
    if (conn.connected) this.moveBody("flowing");
  }

  onConnect(): void {
    if (this.body === "waiting" && this.fwd.hasBody) this.moveBody("flowing");
  }

  private onBodyData(chunk: Buffer): void {
    const conn = this.conn;
    if (conn === null) return;
    this.bodyBytesIn += chunk.length;
    if (this.maxBody > 0 && this.fwd.contentLength < 0) {
      this.bodySeen += chunk.length;
      if (this.bodySeen > this.maxBody) return this.bodyTooLarge();
    }
    const socket = conn.socket;
    let ok: boolean;
    if (this.fwd.contentLength < 0) {
      socket.cork();
      socket.write(chunk.length.toString(16) + CRLF);
      socket.write(chunk);
      ok = socket.write(CRLF);
      socket.uncork();
    } else {
      ok = socket.write(chunk);
    }
    if (!ok && socket.writableLength >= RESPONSE_BUFFER_BYTES) this.req.pause();
  }

  private onBodyEnd(): void {
    const conn = this.conn;
    // An HTTP/2 stream reset before its end is an abandoned upload, not a complete one.
    if ((this.req as { aborted?: boolean }).aborted === true || conn === null) return this.moveBody("stopped");
    if (this.fwd.contentLength < 0) conn.socket.write(LAST_CHUNK);
    this.bodyDoneAt = performance.now();
    this.moveBody("sent");
    if (this.phase === "complete") this.releaseConnection();
  }

  onDrain(): void {
    if (this.body === "flowing" && this.req.isPaused()) this.req.resume();
  }

  /** A chunked body grew past the limit: stop forwarding, answer 413 if nothing was sent yet. */
  private bodyTooLarge(): void {
    this.refuseBody("body_too_large", 413, `request body is larger than the ${this.maxBody} bytes ${this.entry.app} accepts\n`);
  }

  /**
   * The client did not send its whole body within the body timeout: the app's request is ended (its
   * connection closed, so a trickling client cannot hold it), the client gets 408, or has its
   * response cut if one was under way.
   */
  bodyTimedOut(seconds: number): void {
    this.refuseBody("body_timeout", 408, `request body did not arrive within ${seconds}s\n`);
  }

  private refuseBody(reason: string, status: number, message: string): void {
    this.reason = reason;
    this.host.metering.reject(this.entry.app, reason);
    this.moveTo("refused");
    const res = this.res;
    if (res.headersSent || res.writableFinished) return void res.destroy();
    res.shouldKeepAlive = false;
    plainText(res, status, message, { "X-Request-Id": this.fwd.requestId });
    // An HTTP/2 client is asked to stop sending the rest (RFC 9113 §8.1: a complete response, then
    // RST_STREAM with NO_ERROR); HTTP/1 connections close after this answer instead.
    if (this.req.httpVersionMajor === 2) (res as unknown as { stream: { close(code: number): void } }).stream.close(0);
  }

  onHead(head: ResponseHead): void {
    this.headAt = performance.now();
    const res = this.res;
    this.moveTo("relaying");
    this.relayedStatus = head.status;
    this.keepAlive = head.keepAlive;
    this.keepAliveTimeout = head.keepAliveTimeout;
    const { headers, hasLength } = buildResponseHeaders(head.rawHeaders, this.fwd.requestId);
    if (this.fwd.secure && this.entry.settings.hsts === true) headers.push("Strict-Transport-Security", HSTS_VALUE);
    // HTTP/2 has no reason phrase (RFC 9113 §8.3.2); Node warns when given one.
    res.writeHead(head.status, this.req.httpVersionMajor === 2 ? undefined : head.reason, headers);
    // Streams of unknown length (server-sent events, chunked) must reach the client before the body
    // ends: flushed once this read is handled, unless the whole body came with it.
    this.flushPending = !hasLength;
  }

  onBody(chunk: Buffer, last: boolean): void {
    const res = this.res;
    this.bodyBytesOut += chunk.length;
    const rate = this.entry.settings.bandwidthBytesPerSecond;
    if (rate !== undefined) this.throttle(rate, chunk.length, last);
    if (last) {
      // Complete before the client's response ends: ending it closes it, which must not read as the client leaving.
      this.moveTo("complete");
      res.end(chunk);
      return;
    }
    if (chunk.length === 0) return;
    // Up to RESPONSE_BUFFER_BYTES may wait for a slow client before the upstream is paused: pausing
    // at every full socket buffer would stop and restart reading for each piece of a large body.
    if (!res.write(chunk) && res.writableLength >= RESPONSE_BUFFER_BYTES) {
      const conn = this.conn!;
      this.holdUpstream(conn, "client");
      res.once("drain", () => this.releaseUpstream(conn, "client"));
    }
  }

  /** The one place the app's connection is paused for the answer's sake (see UpstreamHold). */
  private holdUpstream(conn: UpstreamConnection, why: "client" | "bandwidth"): void {
    conn.socket.pause();
    const was = this.hold;
    this.hold = was === "reading" || was === why ? why : "both";
  }

  /** Ends one reason to hold the connection; reading resumes when none is left. */
  private releaseUpstream(conn: UpstreamConnection, why: "client" | "bandwidth"): void {
    if (this.conn !== conn) return;
    const was = this.hold;
    if (was === "both") this.hold = why === "client" ? "bandwidth" : "client";
    else if (was === why) {
      this.hold = "reading";
      conn.socket.resume();
    }
  }

  /**
   * Takes a piece of the response body from the app's bandwidth; in deficit, the app's connection is
   * not read until the deficit has refilled. The piece itself goes out at once (the response head and
   * the bytes read with it are never held back), and the last one needs no wait: the next response pays.
   */
  private throttle(rate: number, bytes: number, last: boolean): void {
    const waitMs = this.host.bandwidth.take(this.entry.app, rate, bytes);
    if (waitMs === 0 || last) return;
    const conn = this.conn!;
    this.holdUpstream(conn, "bandwidth");
    // Another piece of the same read in deficit: the wait starts again from the deficit now.
    if (this.throttleTimer !== undefined) clearTimeout(this.throttleTimer);
    this.throttleTimer = setTimeout(() => {
      this.throttleTimer = undefined;
      this.releaseUpstream(conn, "bandwidth");
    }, waitMs);
  }

  /** The exchange ended during a bandwidth wait: the connection is released or dropped as it ends. */
  private endThrottleWait(): void {
    clearTimeout(this.throttleTimer);
    this.throttleTimer = undefined;
  }

  onEnd(): void {
    this.flushPending = false;
    if (this.phase === "complete") return;
    this.moveTo("complete");
    this.res.end();
  }

  onRead(): void {
    if (this.phase === "complete") {
      // The upstream answered before the whole body was sent: that connection cannot carry another request.
      if (this.body !== "sent") {
        this.moveBody("stopped");
        this.dropConnection();
      } else {
        this.releaseConnection();
      }
      return;
    }
    if (this.flushPending) {
      this.flushPending = false;
      this.res.flushHeaders();
    }
  }

  private releaseConnection(): void {
    const conn = this.conn;
    if (conn === null) return;
    this.conn = null;
    // Paused for a slow client in the read that also ended the response: the next request needs it reading.
    if (conn.socket.isPaused()) conn.socket.resume();
    if (this.keepAlive) this.host.upstreams.poolFor(this.upstream!).release(conn, this.keepAliveTimeout);
    else conn.destroy();
  }

  private dropConnection(): void {
    const conn = this.conn;
    if (conn === null) return;
    this.conn = null;
    conn.destroy();
  }

  onProtocolError(err: Error): void {
    this.conn = null;
    // Bytes after a complete response: only the connection is lost.
    if (this.phase === "complete") return this.moveBody("stopped");
    if (this.phase === "awaiting" || this.phase === "relaying") this.fail(err.message, false);
  }

  onClose(err: NodeJS.ErrnoException | undefined): void {
    const conn = this.conn;
    this.conn = null;
    if (this.phase !== "awaiting" && this.phase !== "relaying") return this.moveBody("stopped");
    const retry = this.phase === "awaiting" && this.body !== "flowing" && conn !== null && mayRetry({
      retries: this.attempt, answered: false, errorCode: err?.code, reused: conn.uses > 1, bytesReceived: conn.parser.received,
      method: this.req.method, hasBody: this.fwd.hasBody,
    });
    if (retry) {
      this.moveTo("idle");
      this.attempt++;
      return this.send(RouteTable.pick(this.entry) ?? this.upstream!);
    }
    this.fail(err?.code ?? err?.message ?? "connection closed before the response was complete", true);
  }

  /** The upstream failed this request: 502 if nothing was sent to the client yet, else cut its response. */
  private fail(why: string, connectionLevel: boolean): void {
    this.moveTo("failed");
    const req = this.req;
    this.host.log(`${req.method} ${this.fwd.host}${req.url} → ${this.upstream!.address} (app ${this.entry.app}) failed: ${why} request_id=${this.fwd.requestId}`);
    const res = this.res;
    if (res.headersSent || this.relayed) return void res.destroy();
    res.setHeader("X-Request-Id", this.fwd.requestId);
    if (req.httpVersionMajor === 1) res.shouldKeepAlive = false;
    const body = connectionLevel ? `app "${this.entry.app}" did not answer (bad gateway)\n` : `app "${this.entry.app}" sent a malformed response (bad gateway)\n`;
    plainText(res, 502, body);
  }

  private onClientClose(): void {
    // Not the response's writableFinished: an HTTP/2 response reports finished when the client reset
    // its stream (a closed EventSource, a cancelled upload), and the app's request must end then too.
    const phase = this.phase;
    if (phase === "idle" || phase === "awaiting" || phase === "relaying") this.moveTo("abandoned");
  }
}
