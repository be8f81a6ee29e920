/**
 * Reads clients' HTTP/1.x requests off a connection (RFC 9112 §3 request line, §5 fields, §6 body
 * length, §7.1 chunked coding), one at a time: pipelined requests wait, unread, until `next()`.
 *
 * The router forwards what it reads to apps, so the reader is strict wherever two parsers could
 * disagree about where a request ends (request smuggling, RFC 9112 §11.2): both Content-Length and
 * Transfer-Encoding, a coding other than chunked, differing lengths, folded lines, whitespace before
 * a colon, bare CR or LF and control characters are all refused with 400 and the connection closed.
 */
import { hasListToken, isDigits, isTokenChar, MessageParser, replaceHost, splitAbsoluteTarget, State, type BodySink } from "./http1-message.ts";

/** Largest request line plus header section accepted: Node's default, and nginx's 4 × 8 KiB is close. */
export const MAX_REQUEST_HEAD_BYTES = 16 * 1024;

/** A request the router cannot read: answered with `status` and a one-line reason, then the connection closes. */
export class ClientProtocolError extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
  }
}

/** A parsed request line and header section. */
export interface RequestHead {
  method: string;
  /** The request target as sent (origin form "/path?query" in all but proxy requests). */
  url: string;
  /** 0 or 1 (HTTP/1.0, HTTP/1.1). */
  minor: number;
  /** Field lines as received, name and value alternating (values trimmed of surrounding whitespace). */
  rawHeaders: string[];
  /** The client may send another request on this connection after this one. */
  keepAlive: boolean;
  /** Connection: upgrade with an Upgrade field (a WebSocket handshake): the connection leaves HTTP. */
  upgrade: boolean;
  /** Expect: 100-continue. */
  expectContinue: boolean;
}

export interface RequestSink extends BodySink {
  onHead(head: RequestHead): void;
}

export class RequestParser extends MessageParser<RequestSink> {
  protected readonly what = "request";

  constructor(sink: RequestSink, maxHeadBytes = MAX_REQUEST_HEAD_BYTES) {
    super(sink, maxHeadBytes);
  }

  /** Bytes have arrived for a request whose head is not complete yet. */
  get readingHead(): boolean {
    return this.state === State.Head && this.pending !== null;
  }

  /** Bytes of the next request(s) that arrived while this one was being served. */
  get buffered(): number {
    return this.state === State.Done && this.pending !== null ? this.pending.length : 0;
  }

  /**
   * Moves on to the next request once the current one is answered, reading any of its bytes that
   * already arrived (which may complete its head, calling the sink at once).
   */
  next(): void {
    this.state = State.Head;
    this.remaining = 0;
    this.received = 0;
    if (this.pending !== null) this.push(Buffer.alloc(0));
  }

  /** Takes the bytes read past the current request (for a connection leaving HTTP after an upgrade). */
  takeBuffered(): Buffer {
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = null;
    return rest;
  }

  /** The client closed its side: false when that cut a request short. */
  end(): boolean {
    return this.state === State.Done || (this.state === State.Head && this.pending === null);
  }

  protected error(message: string, tooLarge = false): Error {
    return new ClientProtocolError(message, tooLarge ? 431 : 400);
  }

  /** Pipelined bytes wait for next(). */
  protected afterDone(chunk: Buffer, at: number): void {
    this.pending = at === 0 ? chunk : chunk.subarray(at);
  }

  protected readHead(text: string): void {
    // A server ignores empty lines before a request line (RFC 9112 §2.2), e.g. a CRLF sent after a body.
    let start = 0;
    while (text.startsWith("\r\n", start)) start += 2;
    if (start === text.length) return;
    const lineEnd = text.indexOf("\r\n", start);
    const line = lineEnd < 0 ? text.slice(start) : text.slice(start, lineEnd);
    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
    const sp1 = line.indexOf(" ");
    const sp2 = line.indexOf(" ", sp1 + 1);
    if (sp1 <= 0 || sp2 < 0 || sp2 === sp1 + 1 || line.length - sp2 !== 9) throw this.error("malformed request line");
    for (let i = 0; i < sp1; i++) if (!isTokenChar(line.charCodeAt(i))) throw this.error("malformed request method");
    for (let i = sp1 + 1; i < sp2; i++) {
      const c = line.charCodeAt(i);
      if (c <= 32 || c === 127) throw this.error("malformed request target");
    }
    if (!line.startsWith("HTTP/1.", sp2 + 1)) {
      if (/^HTTP\/\d\.\d$/.test(line.slice(sp2 + 1))) throw new ClientProtocolError("only HTTP/1.0 and HTTP/1.1 are served here", 505);
      throw this.error("malformed HTTP version");
    }
    const minor = line.charCodeAt(sp2 + 8) - 48;
    if (minor !== 0 && minor !== 1) throw new ClientProtocolError("only HTTP/1.0 and HTTP/1.1 are served here", 505);
    const method = line.slice(0, sp1);
    let url = line.slice(sp1 + 1, sp2);

    const rawHeaders: string[] = [];
    let contentLength = -1;
    let transferEncoding: string | undefined;
    let connection: string | undefined;
    let hosts = 0;
    let upgradeField = false;
    let expect: string | undefined;
    let at = lineEnd < 0 ? text.length : lineEnd + 2;
    while (at < text.length) {
      at = this.readField(text, at);
      const name = this.fieldName;
      const value = this.fieldValue;
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === "host") hosts++;
          break;
        case 6:
          if (name.toLowerCase() === "expect") expect = value;
          break;
        case 7:
          if (name.toLowerCase() === "upgrade" && value.length > 0) upgradeField = true;
          break;
        case 10:
          if (name.toLowerCase() === "connection") connection = connection === undefined ? value : `${connection}, ${value}`;
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            if (!isDigits(value) || value.length > 15) throw this.error("malformed Content-Length");
            const length = Number(value);
            if (contentLength >= 0 && length !== contentLength) throw this.error("conflicting Content-Length values");
            contentLength = length;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") {
            if (transferEncoding !== undefined) throw this.error("more than one Transfer-Encoding field");
            transferEncoding = value;
          }
          break;
      }
      rawHeaders.push(name, value);
    }
    if (hosts > 1) throw this.error("more than one Host field");
    if (hosts === 0 && minor === 1) throw this.error("an HTTP/1.1 request needs a Host field");
    // An absolute-form target names the host itself (RFC 9112 §3.2.2): the app gets the origin form
    // and that host, as the route is chosen by it.
    if (url.charCodeAt(0) !== 47) {
      const target = splitAbsoluteTarget(url);
      if (target === "malformed") throw this.error("malformed request target");
      if (target !== null) {
        url = target.path;
        replaceHost(rawHeaders, target.authority);
      }
    }
    // An offer to switch protocols (RFC 9110 §7.8), taken up only in HTTP/1.1 and without a body: a
    // request with one (an h2c offer on a POST) is served as HTTP, its body read as usual.
    const upgrade = upgradeField && minor === 1 && transferEncoding === undefined && contentLength <= 0 &&
      connection !== undefined && hasListToken(connection, "upgrade");
    if (transferEncoding !== undefined) {
      if (contentLength >= 0) throw this.error("both Content-Length and Transfer-Encoding");
      if (minor === 0) throw this.error("Transfer-Encoding in an HTTP/1.0 request");
      if (transferEncoding.toLowerCase() !== "chunked") throw this.error("unsupported Transfer-Encoding (only chunked is accepted)");
    }
    if (method === "CONNECT") throw new ClientProtocolError("CONNECT is not served here: the router forwards requests to apps by Host", 501);
    if (upgrade) {
      // What follows the head belongs to the new protocol (the tunnel carries it as is).
      this.state = State.Done;
    } else if (transferEncoding !== undefined) {
      this.state = State.ChunkSize;
    } else if (contentLength > 0) {
      this.remaining = contentLength;
      this.state = State.Length;
    } else {
      this.state = State.Done;
    }
    // `close` wins over `keep-alive` (RFC 9112 §9.3).
    const keepAlive = connection === undefined ? minor === 1 : !hasListToken(connection, "close") && (minor === 1 || hasListToken(connection, "keep-alive"));
    const expectContinue = expect !== undefined && minor === 1 && expect.toLowerCase() === "100-continue";
    if (expect !== undefined && !expectContinue && minor === 1) throw new ClientProtocolError(`unsupported expectation ${JSON.stringify(expect)}`, 417);
    this.sink.onHead({ method, url, minor, rawHeaders, keepAlive, upgrade, expectContinue });
    if (this.state === State.Done) this.sink.onEnd();
  }
}
