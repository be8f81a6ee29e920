/**
 * The client side of the plain-HTTP router: one object per TCP connection reads requests with
 * RequestParser and writes responses straight to the socket (RFC 9112 §6–§9: framing, keep-alive,
 * pipelining in order, closing). Its requests and responses are in client-messages.ts.
 *
 * Why not Node's HTTP server: per request it builds a readable and a writable stream, a header
 * object, and crosses from C++ to JavaScript several times. Here a request costs one parse of its
 * head and one write of the response head (with the body when it is already there).
 */
import type { Socket } from "node:net";
import { ClientRequest, ClientResponse, HOLD_BYTES } from "./client-messages.ts";
import { ClientProtocolError, RequestParser, type RequestHead, type RequestSink } from "./client-request.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import { httpDate, REASONS } from "./plain-answers.ts";

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

/** An idle keep-alive connection is closed after this long (Node's and nginx's defaults are 5 s and 75 s). */
const KEEP_ALIVE_MS = 65_000;
/** How long a closing connection keeps reading (and dropping) what the client still sends, so its answer is not lost to a reset. */
const LINGER_MS = 5_000;

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");

/**
 * Where a connection is (RFC 9112 §9.3: one request at a time, answered in order):
 * - "idle": between requests, nothing of the next one read yet (a new connection starts here);
 * - "head": bytes of a request head are arriving (the header timeout runs);
 * - "serving": a request is read and its answer is not finished (its body may still be arriving);
 * - "finishing": answered; the request's body may still be arriving (the rest is dropped);
 * - "blocked": answered and read, but the client does not read its answers: the next request waits;
 * - "upgrading": an upgrade request was read; the connection leaves HTTP at the next step;
 * - "tunnel": the connection belongs to the upgrade handling now;
 * - "closing": the last answer is written; what the client still sends is read and dropped;
 * - "closed".
 */
type ConnectionPhase = "idle" | "head" | "serving" | "finishing" | "blocked" | "upgrading" | "tunnel" | "closing" | "closed";

export class ClientConnection implements RequestSink {
  private readonly parser: RequestParser;
  private phase: ConnectionPhase = "idle";
  /** When the phase began (Date.now()), for the timeouts of "idle", "head" and "blocked". */
  private since: number;
  /** The request being served (or finished, or upgraded). */
  private req: ClientRequest | null = null;
  /** Its response, while "serving". */
  private res: ClientResponse | null = null;
  /** No request after the current one: the client asked so, or the router is shutting down. */
  private lastRequest = false;
  /** Inside a read or an advance: a response finished meanwhile is taken up when it returns. */
  private stepping = false;
  private readingHeld = false;
  /** The client closed its side. */
  private clientEnded = false;
  private readonly onData = (data: Buffer) => this.read(data);
  private readonly onSocketEnd = () => this.onClientEnd();
  private readonly onDrain = () => {
    this.res?.emitDrain();
    if (this.phase === "blocked") this.advance();
  };
  private readonly onClose = () => this.closed();

  constructor(private readonly host: ConnectionHost, readonly socket: Socket, private readonly serverClosing: () => boolean) {
    this.parser = new RequestParser(this);
    this.since = Date.now();
    socket.on("data", this.onData);
    socket.on("end", this.onSocketEnd);
    socket.on("drain", this.onDrain);
    socket.on("close", this.onClose);
    socket.on("error", () => {});
  }

  /** No request after the current one: the client asked so, or the router is shutting down. */
  get willClose(): boolean {
    return this.lastRequest || this.serverClosing();
  }

  /** The one place the phase changes; the timed phases start their clock here. */
  private moveTo(next: ConnectionPhase): void {
    this.phase = next;
    if (next === "idle" || next === "head" || next === "blocked") this.since = Date.now();
  }

  /** Nothing more is read as HTTP: the connection was handed over, or is closing. */
  private get outOfHttp(): boolean {
    const phase = this.phase;
    return phase === "upgrading" || phase === "tunnel" || phase === "closing" || phase === "closed";
  }

  private read(data: Buffer): void {
    if (this.outOfHttp) return;
    this.stepping = true;
    try {
      this.parser.push(data);
    } catch (err) {
      this.stepping = false;
      return this.failed(err);
    }
    this.stepping = false;
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
    if (this.stepping) return;
    this.stepping = true;
    try {
      for (;;) {
        const phase = this.phase;
        if (phase === "upgrading") return this.handOver();
        if (phase !== "finishing" && phase !== "blocked") break;
        if (!this.req!.complete) break;
        // The current request is answered and fully read.
        if (this.willClose) {
          this.req = null;
          return this.shutdown();
        }
        // A client that does not read its answers gets no more of them until it does; the request
        // stays current until then, so the drain comes back here and reads the next one.
        if (this.socket.writableNeedDrain) {
          this.moveTo("blocked");
          this.holdReading(true);
          break;
        }
        this.req = null;
        this.holdReading(false);
        if (this.parser.buffered === 0) {
          this.moveTo("idle");
          this.parser.next();
          break;
        }
        this.moveTo("head");
        try {
          this.parser.next();
        } catch (err) {
          return this.failed(err);
        }
      }
      // The header timeout runs from the first byte of a head.
      if (this.phase === "idle" && this.parser.readingHead) this.moveTo("head");
      else if (this.phase === "head" && !this.parser.readingHead) this.moveTo("idle");
      if (this.parser.buffered >= HOLD_BYTES) this.holdReading(true);
    } finally {
      this.stepping = false;
    }
  }

  /** A read failed: a malformed request gets its answer; anything else is the router's own fault. */
  private failed(err: unknown): void {
    if (err instanceof ClientProtocolError) return this.refuse(err);
    this.host.internalError(`a connection from ${this.socket.remoteAddress}`, err);
    this.refuse(new ClientProtocolError("the router failed to serve this request", 500));
  }

  onHead(head: RequestHead): void {
    const req = new ClientRequest(this, head);
    this.req = req;
    if (head.upgrade) return this.moveTo("upgrading");
    if (!head.keepAlive || this.serverClosing()) this.lastRequest = true;
    const res = new ClientResponse(this, req, !this.lastRequest);
    this.res = res;
    this.moveTo("serving");
    this.host.handleRequest(req, res);
  }

  /** Tells the client to send the body it holds back (Expect: 100-continue), unless it was answered already. */
  sendContinue(): void {
    if (this.phase === "serving" && !this.res!.headersSent) this.socket.write(CONTINUE);
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
    this.moveTo("finishing");
    this.advance();
  }

  /** Answers a request that cannot be read, then closes. */
  private refuse(err: ClientProtocolError): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    const res = this.res;
    this.res = null;
    this.req?.discard();
    this.req = null;
    this.lastRequest = true;
    if (res !== null) {
      // Mid-body: whatever the proxy sent upstream is abandoned.
      res.abort();
      if (res.headersSent) {
        this.moveTo("closing");
        return void this.socket.destroy();
      }
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
    if (this.phase === "closing" || this.phase === "closed") return;
    this.moveTo("closing");
    this.lastRequest = true;
    const socket = this.socket;
    if (socket.destroyed) return;
    this.holdReading(false);
    socket.off("data", this.onData);
    socket.on("data", () => {});
    // The linger starts once the answer is flushed: a slow reader still gets all of it.
    socket.end(() => {
      if (!this.clientEnded) setTimeout(() => socket.destroy(), LINGER_MS).unref();
    });
  }

  /**
   * The client closed its side. As in Node's server and nginx, a client that closes while its
   * request is being served has given up: the request is abandoned (the proxy lets the upstream go).
   */
  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.phase === "serving" || !this.parser.end()) return void this.socket.destroy();
    this.shutdown();
  }

  private closed(): void {
    const res = this.res;
    this.res = null;
    if (res !== null) res.abort();
    this.req = null;
    this.moveTo("closed");
    this.host.connectionClosed(this);
  }

  /** Gives the connection to the proxy's upgrade handling, with the bytes read past the request head. */
  private handOver(): void {
    const req = this.req!;
    this.req = null;
    this.moveTo("tunnel");
    const socket = this.socket;
    socket.off("data", this.onData);
    socket.off("end", this.onSocketEnd);
    socket.off("drain", this.onDrain);
    const rest = this.parser.takeBuffered();
    // Bytes arriving before the tunnel is piped wait in the socket (pipe() resumes it).
    socket.pause();
    this.host.handleUpgrade(req, socket, rest);
  }

  /**
   * The slow-client timeouts, checked by the proxy's sweep: a request head must be complete within
   * the header timeout of its first byte, and a connection between requests (or one whose client
   * does not read its answers) is closed after KEEP_ALIVE_MS; one that never sent a byte has the
   * header timeout to start its request.
   */
  checkTimeouts(now: number, headerLimitMs: number): void {
    const phase = this.phase;
    if (phase === "head") {
      if (now - this.since >= headerLimitMs) this.headerTimeout(Math.round(headerLimitMs / 1000));
    } else if ((phase === "idle" || phase === "blocked") && now - this.since >= (this.socket.bytesRead === 0 ? headerLimitMs : KEEP_ALIVE_MS)) {
      this.closeIfIdle();
    }
  }

  /** Closes the connection now if it is between requests. */
  closeIfIdle(): void {
    const phase = this.phase;
    if (phase !== "serving" && phase !== "upgrading" && phase !== "tunnel") this.socket.destroy();
  }
}
