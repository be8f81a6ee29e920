/**
 * A request and its response on one of the router's own HTTP/1.1 client connections
 * (client-connection.ts): the request's body is passed on as it is read, with backpressure, and the
 * response is framed and written straight to the socket (RFC 9112 §6–§7). They offer the part of
 * Node's IncomingMessage and ServerResponse the proxy uses (ProxyRequest, ProxyResponse), so the
 * proxy serves these and Node's HTTP/2 compatibility objects (the HTTPS front end) alike.
 */
import type { Socket } from "node:net";
import type { ClientConnection } from "./client-connection.ts";
import type { RequestHead } from "./client-request.ts";
import { httpDate, REASONS } from "./plain-answers.ts";
import { leaveUncharged } from "./socket-charge.ts";

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

/** Request-body bytes held for a reader that is not reading yet, and pipelined bytes, before the socket is paused. */
export const HOLD_BYTES = 64 * 1024;

const EMPTY = Buffer.alloc(0);

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
