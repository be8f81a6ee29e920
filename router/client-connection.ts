/**
 * The client side of the plain-HTTP router: one object per TCP connection reads requests with
 * RequestParser and writes responses straight to the socket (RFC 9112 §6–§9: framing, keep-alive,
 * pipelining in order, closing). The request and response objects offer the part of Node's
 * IncomingMessage and ServerResponse the proxy uses (ProxyRequest, ProxyResponse), so the proxy
 * serves these and Node's HTTP/2 compatibility objects (the HTTPS front end) alike.
 *
 * Why not Node's HTTP server: per request it builds a readable and a writable stream, a header
 * object, and crosses from C++ to JavaScript several times. Here a request costs one parse of its
 * head and one write of the response head (with the body when it is already there).
 */
import type { Socket } from "node:net";
import { ClientProtocolError, RequestParser, type RequestHead, type RequestSink } from "./client-request.ts";
import { leaveUncharged } from "./socket-charge.ts";
import { REASONS } from "./plain-answers.ts";

/** The request as the proxy sees it (a subset of http.IncomingMessage). */
export interface ProxyRequest {
  readonly method?: string;
  readonly url?: string;
  readonly httpVersionMajor: number;
  readonly httpVersion: string;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  /** The whole body was read. */
  readonly complete: boolean;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  once(event: "end", listener: () => void): unknown;
  off(event: "data" | "end", listener: (...args: never[]) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
}

/** The response as the proxy writes it (a subset of http.ServerResponse). */
export interface ProxyResponse {
  statusCode: number;
  readonly headersSent: boolean;
  shouldKeepAlive: boolean;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  readonly writableLength: number;
  setHeader(name: string, value: string | number): unknown;
  getHeader?(name: string): unknown;
  writeHead(status: number, reason?: string | Headers, headers?: Headers): unknown;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  flushHeaders(): void;
  destroy(): unknown;
  once(event: "close" | "drain", listener: () => void): unknown;
}

type Headers = string[] | Record<string, string | number>;

/** What a connection needs from the proxy it serves. */
export interface ConnectionHost {
  handleRequest(req: ProxyRequest, res: ProxyResponse): void;
  handleUpgrade(req: ProxyRequest, socket: Socket, head: Buffer): void;
  /** The connection closed (its requests are over). */
  connectionClosed(conn: ClientConnection): void;
  /** The router answered a request it could not read (400, 408, 431, 501): for the access log. */
  refused(socket: Socket, status: number, reason: string): void;
  /** An exception escaped while serving this connection: a bug, logged with its stack. */
  internalError(what: string, err: unknown): void;
}

/** The access log's reason for a request the router could not read, by status. */
const REFUSAL_REASONS: Record<number, string> = {
  400: "bad_request", 408: "header_timeout", 417: "expectation_failed", 431: "header_too_large", 500: "router_error", 501: "not_implemented", 505: "http_version_not_supported",
};

/** Request-body bytes held for a reader that is not reading yet, and pipelined bytes, before the socket is paused. */
const HOLD_BYTES = 64 * 1024;
/** How long a closing connection keeps reading (and dropping) what the client still sends, so its answer is not lost to a reset. */
const LINGER_MS = 5_000;

let dateSecond = 0;
let dateValue = "";
/** The Date field value (RFC 9110 §6.6.1), computed once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");

export class ClientRequest implements ProxyRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersionMajor = 1;
  readonly httpVersion: string;
  readonly rawHeaders: string[];
  private dataListener: ((chunk: Buffer) => void) | null = null;
  private endListener: (() => void) | null = null;
  /** Body pieces not yet passed on, and their size. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** The whole body was read from the connection (its end may not have been passed on yet). */
  complete = false;
  private endPassed = false;
  private paused = false;
  private flushQueued = false;
  private discarded = false;
  /** The client waits for `100 Continue` before sending its body (Expect: 100-continue). */
  private awaitingContinue: boolean;

  constructor(private readonly conn: ClientConnection, head: RequestHead) {
    this.method = head.method;
    this.url = head.url;
    this.httpVersion = head.minor === 1 ? "1.1" : "1.0";
    this.rawHeaders = head.rawHeaders;
    this.awaitingContinue = head.expectContinue;
  }

  get socket(): Socket {
    return this.conn.socket;
  }

  /** The client holds its body back until 100 Continue, which was not sent. */
  get bodyWithheld(): boolean {
    return this.awaitingContinue && !this.complete;
  }

  on(event: "data", listener: (chunk: Buffer) => void): this {
    this.dataListener = listener;
    // The body is wanted (it goes to the app): a client waiting for leave to send it gets it now. One
    // the router answers itself (413, 429 …) gets that answer instead, without sending its body.
    if (this.awaitingContinue) {
      this.awaitingContinue = false;
      this.conn.sendContinue();
    }
    this.queueFlush();
    return this;
  }

  once(event: "end", listener: () => void): this {
    this.endListener = listener;
    this.queueFlush();
    return this;
  }

  off(event: "data" | "end", listener: (...args: never[]) => void): this {
    if (event === "data" && this.dataListener === listener) this.dataListener = null;
    if (event === "end" && this.endListener === listener) this.endListener = null;
    return this;
  }

  pause(): this {
    this.paused = true;
    this.conn.holdReading(true);
    return this;
  }

  resume(): this {
    this.paused = false;
    this.conn.holdReading(this.heldBytes >= HOLD_BYTES);
    this.queueFlush();
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** A piece of the body from the parser. */
  pushBody(chunk: Buffer): void {
    if (chunk.length === 0) return;
    // Dropped after the app answered: neither that request nor the next one on the connection is charged it.
    if (this.discarded) return leaveUncharged(this.conn.socket, chunk.length);
    if (this.dataListener !== null && !this.paused && this.heldBytes === 0) return this.dataListener(chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= HOLD_BYTES) this.conn.holdReading(true);
  }

  /** The body ended. */
  pushEnd(): void {
    this.complete = true;
    if (this.heldBytes === 0 && !this.paused) this.passEnd();
  }

  /** Nobody will read the rest of the body: drop it as it arrives. */
  discard(): void {
    this.discarded = true;
    this.dataListener = null;
    this.endListener = null;
    this.held = [];
    this.heldBytes = 0;
    this.paused = false;
    this.conn.holdReading(false);
  }

  private passEnd(): void {
    if (this.endPassed || this.endListener === null) return;
    this.endPassed = true;
    const end = this.endListener;
    this.endListener = null;
    end();
  }

  /** Held pieces go to a listener attached later on its next turn, as a Node stream would pass them. */
  private queueFlush(): void {
    if (this.flushQueued || (this.heldBytes === 0 && !this.complete)) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.held.length > 0 && this.dataListener !== null && !this.paused) {
      const chunk = this.held.shift()!;
      this.heldBytes -= chunk.length;
      this.dataListener(chunk);
    }
    if (this.heldBytes < HOLD_BYTES && !this.paused) this.conn.holdReading(false);
    if (this.heldBytes === 0 && this.complete && !this.paused) this.passEnd();
  }
}

export class ClientResponse implements ProxyResponse {
  statusCode = 200;
  headersSent = false;
  shouldKeepAlive: boolean;
  destroyed = false;
  /** end() was called and everything was handed to the socket. */
  writableFinished = false;
  private extra: string[] | null = null;
  /** The response head, written with the first piece of body (or by flushHeaders). */
  private head: string | null = null;
  private chunked = false;
  private noBody = false;
  private closeListeners: (() => void)[] | null = null;
  private drainListeners: (() => void)[] | null = null;
  private closeEmitted = false;

  constructor(private readonly conn: ClientConnection, private readonly req: ClientRequest, keepAlive: boolean) {
    this.shouldKeepAlive = keepAlive;
  }

  get writableLength(): number {
    return this.conn.socket.writableLength;
  }

  /** Sets a field for writeHead to add (replacing one of the same name set before, as Node does). */
  setHeader(name: string, value: string | number): this {
    const extra = (this.extra ??= []);
    const lower = name.toLowerCase();
    for (let i = 0; i < extra.length; i += 2) {
      if (extra[i].toLowerCase() === lower) {
        extra[i + 1] = String(value);
        return this;
      }
    }
    extra.push(name, String(value));
    return this;
  }

  writeHead(status: number, reason?: string | Headers, headers?: Headers): this {
    if (this.headersSent) return this;
    if (reason !== undefined && typeof reason !== "string") {
      headers = reason;
      reason = undefined;
    }
    let fields = headers === undefined ? [] : Array.isArray(headers) ? headers : Object.entries(headers).flat().map(String);
    if (this.extra !== null) fields = fields.concat(this.extra);
    this.statusCode = status;
    this.headersSent = true;
    this.noBody = this.req.method === "HEAD" || status === 204 || status === 304 || status < 200;
    let text = `HTTP/1.${this.req.httpVersion === "1.1" ? 1 : 0} ${status} ${reason ?? REASONS[status] ?? "Unknown"}\r\n`;
    let length = false;
    let date = false;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i];
      if (name.length === 14 && name.toLowerCase() === "content-length") length = true;
      else if (name.length === 4 && name.toLowerCase() === "date") date = true;
      text += `${name}: ${fields[i + 1]}\r\n`;
    }
    if (!date) text += `Date: ${httpDate()}\r\n`;
    if (!length && !this.noBody) {
      // No length: chunked for HTTP/1.1, the end of the connection for HTTP/1.0 (RFC 9112 §6.3).
      if (this.req.httpVersion === "1.1") {
        this.chunked = true;
        text += "Transfer-Encoding: chunked\r\n";
      } else {
        this.shouldKeepAlive = false;
      }
    }
    // A client told nothing about its withheld body (no 100 Continue) may send it or not: the
    // connection cannot be read on safely, so it closes after this answer.
    if (this.conn.willClose || this.req.bodyWithheld) this.shouldKeepAlive = false;
    if (!this.shouldKeepAlive) text += "Connection: close\r\n";
    else if (this.req.httpVersion === "1.0") text += "Connection: keep-alive\r\n";
    this.head = `${text}\r\n`;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableFinished || this.destroyed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const body = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.noBody || body.length === 0) {
      this.flushHeaders();
      return !this.conn.socket.writableNeedDrain;
    }
    return this.conn.writeOut(this.takeHead(), body, this.chunked, false);
  }

  end(chunk?: Buffer | string): this {
    if (this.writableFinished || this.destroyed) return this;
    if (!this.headersSent) this.writeHead(this.statusCode);
    let body = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.noBody || body === undefined) body = EMPTY;
    this.conn.writeOut(this.takeHead(), body, this.chunked, this.chunked);
    this.writableFinished = true;
    // Closed (metering, access log) before the connection moves on to a pipelined request.
    this.emitClose();
    this.conn.responseDone(this);
    return this;
  }

  flushHeaders(): void {
    const head = this.takeHead();
    if (head !== null) this.conn.writeOut(head, EMPTY, false, false);
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.conn.socket.destroy();
    return this;
  }

  once(event: "close" | "drain", listener: () => void): this {
    if (event === "close") (this.closeListeners ??= []).push(listener);
    else (this.drainListeners ??= []).push(listener);
    return this;
  }

  /** The connection closed before the response was finished. */
  abort(): void {
    this.destroyed = true;
    this.emitClose();
  }

  emitDrain(): void {
    const listeners = this.drainListeners;
    if (listeners === null) return;
    this.drainListeners = null;
    for (const l of listeners) l();
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    const listeners = this.closeListeners;
    this.closeListeners = null;
    if (listeners !== null) for (const l of listeners) l();
  }

  private takeHead(): string | null {
    const head = this.head;
    this.head = null;
    return head;
  }
}

const EMPTY = Buffer.alloc(0);

export class ClientConnection implements RequestSink {
  private readonly parser: RequestParser;
  private req: ClientRequest | null = null;
  private res: ClientResponse | null = null;
  /** No request after the current one: the connection closes when its response is done. */
  closing = false;
  /** Inside parser.push: the next request waits until the current read is handled. */
  private parsing = false;
  private upgrade: ClientRequest | null = null;
  /** When the bytes of the current, unfinished request head started to arrive (0: not reading a head). */
  headStartedAt = 0;
  /** When the connection last became idle between requests (0: serving one). */
  idleSince: number;
  private readingHeld = false;
  private ended = false;
  /** Closing: the answer is written (or being written), nothing more is read as HTTP. */
  private shut = false;
  private advancing = false;
  /** The next request waits for the client to read what was written. */
  private waitingDrain = false;
  private readonly onData = (data: Buffer) => this.read(data);
  private readonly onSocketEnd = () => this.clientEnded();
  private readonly onDrain = () => {
    this.res?.emitDrain();
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.advance();
    }
  };
  private readonly onClose = () => this.closed();

  constructor(private readonly host: ConnectionHost, readonly socket: Socket, private readonly serverClosing: () => boolean) {
    this.parser = new RequestParser(this);
    this.idleSince = Date.now();
    socket.on("data", this.onData);
    socket.on("end", this.onSocketEnd);
    socket.on("drain", this.onDrain);
    socket.on("close", this.onClose);
    socket.on("error", () => {});
  }

  /** No request after the current one: the client asked so, or the router is shutting down. */
  get willClose(): boolean {
    return this.closing || this.serverClosing();
  }

  private read(data: Buffer): void {
    if (this.upgrade !== null || this.shut) return;
    if (this.headStartedAt === 0 && this.res === null) this.headStartedAt = Date.now();
    this.parsing = true;
    try {
      this.parser.push(data);
    } catch (err) {
      this.parsing = false;
      return this.failed(err);
    }
    this.parsing = false;
    try {
      this.advance();
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * Moves the connection on after a read or a finished response: hands an upgrade over, closes, or
   * reads the next pipelined request. A loop, not recursion: requests the router answers at once
   * (404, 503 …) may follow each other by the thousand in one read.
   */
  private advance(): void {
    if (this.advancing) return;
    this.advancing = true;
    try {
      for (;;) {
        if (this.upgrade !== null) return this.handOver();
        if (this.shut) return;
        if (this.res !== null || this.req === null || !this.req.complete) break;
        // The current request is answered and fully read.
        if (this.willClose) {
          this.req = null;
          return this.shutdown();
        }
        this.idleSince = Date.now();
        // A client that does not read its answers gets no more of them until it does; the request
        // stays current until then, so the drain comes back here and reads the next one.
        if (this.socket.writableNeedDrain) {
          this.waitingDrain = true;
          this.holdReading(true);
          break;
        }
        this.req = null;
        this.holdReading(false);
        if (this.parser.buffered === 0) {
          this.parser.next();
          break;
        }
        this.headStartedAt = Date.now();
        this.parsing = true;
        try {
          this.parser.next();
        } catch (err) {
          this.parsing = false;
          return this.failed(err);
        }
        this.parsing = false;
      }
      if (this.res === null && this.headStartedAt === 0 && this.parser.readingHead) this.headStartedAt = Date.now();
      else if (this.res === null && !this.parser.readingHead) this.headStartedAt = 0;
      if (this.parser.buffered >= HOLD_BYTES) this.holdReading(true);
    } finally {
      this.advancing = false;
    }
  }

  /** A read failed: a malformed request gets its answer; anything else is the router's own fault. */
  private failed(err: unknown): void {
    if (err instanceof ClientProtocolError) return this.refuse(err);
    this.host.internalError(`a connection from ${this.socket.remoteAddress}`, err);
    this.refuse(new ClientProtocolError("the router failed to serve this request", 500));
  }

  onHead(head: RequestHead): void {
    this.headStartedAt = 0;
    this.idleSince = 0;
    const req = new ClientRequest(this, head);
    if (head.upgrade) {
      this.upgrade = req;
      return;
    }
    if (!head.keepAlive || this.serverClosing()) this.closing = true;
    const res = new ClientResponse(this, req, !this.closing);
    this.req = req;
    this.res = res;
    this.host.handleRequest(req, res);
  }

  /** Tells the client to send the body it holds back (Expect: 100-continue), unless it was answered already. */
  sendContinue(): void {
    if (this.res !== null && !this.res.headersSent && !this.shut) this.socket.write(CONTINUE);
  }

  onBody(chunk: Buffer, last: boolean): void {
    this.req?.pushBody(chunk);
    if (last) this.req?.pushEnd();
  }

  onEnd(): void {
    const req = this.req;
    if (req !== null && !req.complete) req.pushEnd();
  }

  /** Pauses or resumes reading from the client (a slow upstream, or bytes piling up). */
  holdReading(hold: boolean): void {
    if (hold === this.readingHeld) return;
    this.readingHeld = hold;
    if (hold) this.socket.pause();
    else this.socket.resume();
  }

  /**
   * Writes response bytes: the head (if not yet written) and a body piece, chunk-framed when asked,
   * with the last chunk when `last`. Small pieces go out as one buffer, large ones in one writev.
   */
  writeOut(head: string | null, body: Buffer, chunked: boolean, last: boolean): boolean {
    const socket = this.socket;
    if (socket.destroyed) return false;
    if (!chunked) {
      if (head === null) return body.length === 0 ? true : socket.write(body);
      if (body.length === 0) return socket.write(head, "latin1");
      if (body.length <= 16_384) {
        const headBytes = Buffer.byteLength(head, "latin1");
        const out = Buffer.allocUnsafe(headBytes + body.length);
        out.write(head, 0, "latin1");
        body.copy(out, headBytes);
        return socket.write(out);
      }
      socket.cork();
      socket.write(head, "latin1");
      const ok = socket.write(body);
      socket.uncork();
      return ok;
    }
    socket.cork();
    if (head !== null) socket.write(head, "latin1");
    let ok = true;
    if (body.length > 0) {
      socket.write(`${body.length.toString(16)}\r\n`, "latin1");
      socket.write(body);
      ok = socket.write("\r\n", "latin1");
    }
    if (last) ok = socket.write(LAST_CHUNK);
    socket.uncork();
    return ok;
  }

  /** The current response is finished: the next request may be read, or the connection closes. */
  responseDone(res: ClientResponse): void {
    if (res !== this.res) return;
    this.res = null;
    const req = this.req;
    // The app answered without reading the whole body: the rest is read and dropped.
    if (req !== null && !req.complete) req.discard();
    if (!res.shouldKeepAlive || this.willClose) {
      this.req = null;
      return this.shutdown();
    }
    if (!this.parsing) this.advance();
  }

  /** Answers a request that cannot be read, then closes. */
  private refuse(err: ClientProtocolError): void {
    if (this.shut) return;
    const res = this.res;
    this.res = null;
    this.req?.discard();
    this.req = null;
    this.closing = true;
    if (res !== null) {
      // Mid-body: whatever the proxy sent upstream is abandoned.
      res.abort();
      if (res.headersSent) return void this.socket.destroy();
    }
    // A request under way is logged as that request; otherwise this answer is logged on its own.
    if (res === null) this.host.refused(this.socket, err.status, REFUSAL_REASONS[err.status] ?? `status_${err.status}`);
    const body = `${err.message}\n`;
    this.socket.write(
      `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? "Bad Request"}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nDate: ${httpDate()}\r\nConnection: close\r\n\r\n${body}`,
    );
    this.shutdown();
  }

  /** Answers 408 to a client that did not finish its request head in time, then closes. */
  headerTimeout(seconds: number): void {
    this.refuse(new ClientProtocolError(`request headers did not arrive within ${seconds}s`, 408));
  }

  /**
   * Closes after what was written: sends FIN, then keeps reading (and dropping) for a while, so a
   * client still sending does not get a reset that would destroy the answer in flight.
   */
  private shutdown(): void {
    if (this.shut) return;
    this.shut = true;
    this.closing = true;
    this.upgrade = null;
    this.headStartedAt = 0;
    this.idleSince = 0;
    const socket = this.socket;
    if (socket.destroyed) return;
    this.holdReading(false);
    socket.off("data", this.onData);
    socket.on("data", () => {});
    // The linger starts once the answer is flushed: a slow reader still gets all of it.
    socket.end(() => {
      if (!this.ended) setTimeout(() => socket.destroy(), LINGER_MS).unref();
    });
  }

  /**
   * The client closed its side. As in Node's server and nginx, a client that closes while its
   * request is being served has given up: the request is abandoned (the proxy lets the upstream go).
   */
  private clientEnded(): void {
    this.ended = true;
    if (this.res !== null || !this.parser.end()) return void this.socket.destroy();
    this.shutdown();
  }

  private closed(): void {
    const res = this.res;
    this.res = null;
    if (res !== null) res.abort();
    this.req = null;
    this.host.connectionClosed(this);
  }

  /** Gives the connection to the proxy's upgrade handling, with the bytes read past the request head. */
  private handOver(): void {
    const req = this.upgrade!;
    const socket = this.socket;
    socket.off("data", this.onData);
    socket.off("end", this.onSocketEnd);
    socket.off("drain", this.onDrain);
    const rest = this.parser.takeBuffered();
    // Bytes arriving before the tunnel is piped wait in the socket (pipe() resumes it).
    socket.pause();
    this.host.handleUpgrade(req, socket, rest);
  }

  /** Closes the connection now if it is between requests. */
  closeIfIdle(): void {
    if (this.res === null && this.upgrade === null) this.socket.destroy();
  }
}
