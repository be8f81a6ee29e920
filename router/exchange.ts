/**
 * One client request on its way through the proxy, over a pooled upstream connection (see
 * upstream-pool.ts): the request head is written in one piece, the body streamed after it (re-framed
 * as chunked when its length is unknown), and the response relayed as it is read, with backpressure
 * both ways.
 *
 * At most two attempts: the second only when the first provably delivered nothing (the connection
 * was refused), or when a reused keep-alive connection closed before any answer on a body-less
 * idempotent request (RFC 9110 §9.2.2: such a request may be sent again).
 */
import type { ProxyRequest, ProxyResponse } from "./client-connection.ts";
import type { Metering } from "./metering.ts";
import { buildResponseHeaders, type ForwardHeaders } from "./forward-headers.ts";
import { plainText } from "./plain-answers.ts";
import { RouteTable, type RouteEntry, type UpstreamAddress } from "./route-table.ts";
import type { ConnectionOwner, UpstreamConnection, UpstreamPool } from "./upstream-pool.ts";
import type { ResponseHead } from "./upstream-response.ts";

/** Live counters for one upstream address; kept across route changes so draining can watch them. */
export interface UpstreamLoad {
  inflight: number;
  tunnels: number;
}

/** What an exchange needs from the proxy that runs it. */
export interface ExchangeHost {
  poolFor(upstream: UpstreamAddress): UpstreamPool;
  loadFor(address: string): UpstreamLoad;
  readonly metering: Metering;
  logLine(line: string): void;
}

/** Errors raised before a single byte reached the upstream: retrying cannot duplicate anything. */
export const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);

/** Methods RFC 9110 §9.2.2 calls idempotent. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** HSTS value for apps that opt in: a year, subdomains included (RFC 6797 §6.1). */
const HSTS_VALUE = "max-age=31536000; includeSubDomains";

/** Bytes buffered for a slow reader (client or upstream) before the other side is paused. */
const RESPONSE_BUFFER_BYTES = 256 * 1024;

const CRLF = "\r\n";
const LAST_CHUNK = "0\r\n\r\n";

/** True when a string could break out of its line in an HTTP/1.1 head. */
function hasLineBreak(s: string): boolean {
  return s.includes("\r") || s.includes("\n") || s.includes("\0");
}

export class Exchange implements ConnectionOwner {
  private attempt = 0;
  private conn: UpstreamConnection | null = null;
  private load: UpstreamLoad | undefined;
  private settled = true;
  private clientGone = false;
  private upstream: UpstreamAddress | undefined;
  private head: string | undefined;
  /** The request body is being forwarded (listeners on the client request are set). */
  private bodyFlowing = false;
  /** The whole request (head and body) has been written to the upstream. */
  private requestSent = false;
  /** A final response head arrived and was passed on. */
  private responded = false;
  /** The response ended and the client's response was ended. */
  private finished = false;
  private clientEnded = false;
  private flushPending = false;
  private keepAlive = false;
  private keepAliveTimeout = -1;
  private bodySeen = 0;
  /** Request body bytes read from the client, and response body bytes passed to it (HTTP/2 metering counts these). */
  bodyBytesIn = 0;
  bodyBytesOut = 0;
  /** Why the router ended the exchange itself (for the access log), e.g. body_too_large. */
  reason: string | undefined;
  /** Called once the client's response is finished or abandoned (metering, access log). */
  onDone: (() => void) | undefined;

  constructor(
    private readonly host: ExchangeHost,
    private readonly req: ProxyRequest,
    private readonly res: ProxyResponse,
    private readonly entry: RouteEntry,
    private readonly fwd: ForwardHeaders,
    /** Largest body accepted (0 = no limit); only a chunked body needs counting, a declared one was checked. */
    private readonly maxBody: number,
  ) {
    res.once("close", () => {
      this.onClientClose();
      this.onDone?.();
    });
  }

  /** The app's response head was passed on to the client (its body is then counted in bodyBytesOut). */
  get relayed(): boolean {
    return this.responded;
  }

  get upstreamAddress(): string | null {
    return this.upstream?.address ?? null;
  }

  /** The request line and header section for the upstream; null when a field cannot be written safely. */
  private requestHead(): string | null {
    const req = this.req;
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const headers = this.fwd.headers;
    // HTTP/1.1 requests were checked by Node's parser; HTTP/2 ones arrive as free-form strings.
    const check = req.httpVersionMajor === 2;
    if (check && (hasLineBreak(method) || hasLineBreak(path) || path.includes(" "))) return null;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      if (check && (hasLineBreak(headers[i]) || hasLineBreak(headers[i + 1]))) return null;
      head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    }
    return head + CRLF;
  }

  send(upstream: UpstreamAddress): void {
    if (this.head === undefined) {
      const head = this.requestHead();
      if (head === null) {
        this.clientGone = true;
        this.res.setHeader("X-Request-Id", this.fwd.requestId);
        return plainText(this.res, 400, "request has a line break in a header field\n");
      }
      this.head = head;
    }
    this.upstream = upstream;
    const load = this.host.loadFor(upstream.address);
    load.inflight++;
    this.load = load;
    this.settled = false;
    const conn = this.host.poolFor(upstream).acquire();
    this.conn = conn;
    conn.owner = this;
    conn.uses++;
    conn.parser.reset(this, this.req.method === "HEAD");
    // Node reads header bytes as Latin-1 strings: written back the same way, every byte arrives as sent.
    conn.socket.write(this.head, "latin1");
    if (!this.fwd.hasBody) {
      this.requestSent = true;
      return;
    }
    // The body waits for the connection, so a refused connect leaves it unread and retryable.
    if (conn.connected) this.startBody();
  }

  onConnect(): void {
    if (this.fwd.hasBody && !this.bodyFlowing && !this.requestSent) this.startBody();
  }

  /** The body listeners, made only for requests that have a body. */
  private bodyListeners: { data: (chunk: Buffer) => void; end: () => void } | undefined;

  private startBody(): void {
    this.bodyFlowing = true;
    const listeners = (this.bodyListeners ??= { data: (chunk) => this.onBodyData(chunk), end: () => this.onBodyEnd() });
    this.req.on("data", listeners.data);
    this.req.once("end", listeners.end);
  }

  private stopBody(): void {
    if (!this.bodyFlowing) return;
    this.bodyFlowing = false;
    this.req.off("data", this.bodyListeners!.data);
    this.req.off("end", this.bodyListeners!.end);
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
    this.stopBody();
    // An HTTP/2 stream reset before its end is an abandoned upload, not a complete one.
    if ((this.req as { aborted?: boolean }).aborted === true) return;
    const conn = this.conn;
    if (conn === null) return;
    if (this.fwd.contentLength < 0) conn.socket.write(LAST_CHUNK);
    this.requestSent = true;
    if (this.finished) this.releaseConnection();
  }

  onDrain(): void {
    if (this.bodyFlowing && this.req.isPaused()) this.req.resume();
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
    this.stopBody();
    this.reason = reason;
    this.host.metering.reject(this.entry.app, reason);
    this.dropConnection();
    this.settle();
    this.clientGone = true;
    const res = this.res;
    if (res.headersSent || res.writableFinished) return void res.destroy();
    res.shouldKeepAlive = false;
    plainText(res, status, message, { "X-Request-Id": this.fwd.requestId });
    // An HTTP/2 client is asked to stop sending the rest (RFC 9113 §8.1: a complete response, then
    // RST_STREAM with NO_ERROR); HTTP/1 connections close after this answer instead.
    if (this.req.httpVersionMajor === 2) (res as unknown as { stream: { close(code: number): void } }).stream.close(0);
  }

  onHead(head: ResponseHead): void {
    const res = this.res;
    this.responded = true;
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
    if (last) {
      this.clientEnded = true;
      res.end(chunk);
      return;
    }
    if (chunk.length === 0) return;
    // Up to RESPONSE_BUFFER_BYTES may wait for a slow client before the upstream is paused: pausing
    // at every full socket buffer would stop and restart reading for each piece of a large body.
    if (!res.write(chunk) && res.writableLength >= RESPONSE_BUFFER_BYTES) {
      const conn = this.conn!;
      conn.socket.pause();
      res.once("drain", () => {
        if (this.conn === conn) conn.socket.resume();
      });
    }
  }

  onEnd(): void {
    this.finished = true;
    this.flushPending = false;
    if (!this.clientEnded) {
      this.clientEnded = true;
      this.res.end();
    }
    this.settle();
  }

  onRead(): void {
    if (this.finished) {
      // The upstream answered before the whole body was sent: that connection cannot carry another request.
      if (!this.requestSent) {
        this.stopBody();
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
    if (this.keepAlive && !this.clientGone) this.host.poolFor(this.upstream!).release(conn, this.keepAliveTimeout);
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
    this.stopBody();
    if (this.finished) return; // bytes after a complete response: only the connection is lost
    this.fail(err.message, false);
  }

  onClose(err: NodeJS.ErrnoException | undefined): void {
    const conn = this.conn;
    this.conn = null;
    this.stopBody();
    if (this.finished || this.clientGone) return this.settle();
    if (!this.responded && this.attempt === 0 && conn !== null && this.isRetryable(conn, err)) {
      this.settle();
      this.attempt = 1;
      return this.send(RouteTable.pick(this.entry) ?? this.upstream!);
    }
    this.fail(err?.code ?? err?.message ?? "connection closed before the response was complete", true);
  }

  private isRetryable(conn: UpstreamConnection, err: NodeJS.ErrnoException | undefined): boolean {
    if (err?.code !== undefined && NOT_CONNECTED.has(err.code)) return true;
    // A reused connection the upstream closed while idle: nothing was processed, but only a body-less
    // idempotent request can be sent again (a body has already been consumed).
    return conn.uses > 1 && conn.parser.received === 0 && !this.fwd.hasBody && IDEMPOTENT.has(this.req.method ?? "");
  }

  /** The upstream failed this request: 502 if nothing was sent to the client yet, else cut its response. */
  private fail(why: string, connectionLevel: boolean): void {
    this.settle();
    const req = this.req;
    this.host.logLine(`${req.method} ${this.fwd.host}${req.url} → ${this.upstream!.address} (app ${this.entry.app}) failed: ${why} request_id=${this.fwd.requestId}`);
    const res = this.res;
    if (res.headersSent || this.responded) return void res.destroy();
    res.setHeader("X-Request-Id", this.fwd.requestId);
    if (req.httpVersionMajor === 1) res.shouldKeepAlive = false;
    const body = connectionLevel ? `app "${this.entry.app}" did not answer (bad gateway)\n` : `app "${this.entry.app}" sent a malformed response (bad gateway)\n`;
    plainText(res, 502, body);
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.load!.inflight--;
  }

  private onClientClose(): void {
    // Not the response's writableFinished: an HTTP/2 response reports finished when the client reset
    // its stream (a closed EventSource, a cancelled upload), and the app's request must end then too.
    if (this.clientEnded) return;
    this.clientGone = true;
    this.stopBody();
    this.dropConnection();
    this.settle();
  }
}
