/**
 * Reads an upstream's HTTP/1.1 responses off a pooled connection (RFC 9112 §4 status line, §5 fields,
 * §6 body length, §7.1 chunked coding). Incremental: feed it what the socket delivers, in pieces of
 * any size. Strict where leniency would let one response bleed into the next on a reused connection:
 * conflicting Content-Length values, obsolete line folding, malformed chunk sizes and control
 * characters in field values are errors, and the connection is not used again.
 *
 * The pool keeps connections per upstream address, so a misbehaving app can only spoil its own
 * responses; strictness is still the cheaper way to make that impossible too.
 */

import { EMPTY, hasControl, hasListToken, isDigits, MessageParser, ows, State, type BodySink } from "./http1-message.ts";

/** Largest status line plus header section accepted (Node's own server allows 16 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;

export class UpstreamProtocolError extends Error {
  readonly code = "UPSTREAM_PROTOCOL";
}

/** A parsed status line and header section. */
export interface ResponseHead {
  status: number;
  reason: string;
  /** Field lines as received, name and value alternating (values trimmed of surrounding whitespace). */
  rawHeaders: string[];
  /** The connection may carry another request after this response's body. */
  keepAlive: boolean;
  /** Seconds from a `Keep-Alive: timeout=N` field; -1 when absent. */
  keepAliveTimeout: number;
}

export interface ResponseSink extends BodySink {
  /** A final (non-1xx) response head, or a 101 accepting an upgrade; other interim (1xx) responses are read and skipped. */
  onHead(head: ResponseHead): void;
}

/**
 * One response at a time: `push` bytes as they arrive; when the response is done, `reset` it for the
 * next request on the same connection (any bytes left over are an error: HTTP/1.1 without pipelining
 * gets exactly one response per request).
 */
export class ResponseParser extends MessageParser<ResponseSink> {
  private noBody = false;
  protected readonly what = "response";

  constructor(sink: ResponseSink) {
    super(sink, MAX_HEAD_BYTES);
  }

  /** The request asked to switch protocols (an upgrade handshake): a 101 answer ends HTTP. */
  private upgrade = false;
  /** A 101 was read: what follows is the new protocol's, passed on as it comes (see afterDone). */
  private switched = false;

  /**
   * Prepares for the next response. `head` is true for a HEAD request, whose response has no body;
   * `upgrade` for an upgrade handshake, which may be answered 101 (RFC 9110 §15.2.2).
   */
  reset(sink: ResponseSink, head: boolean, upgrade = false): void {
    this.sink = sink;
    this.state = State.Head;
    this.pending = null;
    this.remaining = 0;
    this.noBody = head;
    this.received = 0;
    this.upgrade = upgrade;
    this.switched = false;
  }

  /** The body runs until the connection closes (no length and not chunked). */
  get closeDelimited(): boolean {
    return this.state === State.UntilClose;
  }

  /** The connection ended: completes a close-delimited body, and is an error anywhere else but between responses. */
  end(): void {
    if (this.state === State.UntilClose) {
      this.sink.onBody(EMPTY, true);
      this.finish();
      return;
    }
    if (this.state !== State.Done) throw new UpstreamProtocolError("upstream closed the connection before the response was complete");
  }

  protected error(message: string): Error {
    return new UpstreamProtocolError(message);
  }

  /**
   * Bytes after the end of a response: after a 101, the switched-to protocol's, handed to the sink as
   * body pieces (never `last`: they end with the connection); anywhere else an error.
   */
  protected afterDone(chunk: Buffer, at: number): void {
    if (this.switched) return this.sink.onBody(at === 0 ? chunk : chunk.subarray(at), false);
    throw new UpstreamProtocolError("upstream sent bytes after the end of its response");
  }

  protected readHead(text: string): void {
    // Status line: HTTP-version SP status-code SP [reason-phrase] (RFC 9112 §4)
    const lineEnd = text.indexOf("\r\n");
    const statusLine = lineEnd < 0 ? text : text.slice(0, lineEnd);
    if (statusLine.length < 12 || !statusLine.startsWith("HTTP/1.") || statusLine.charCodeAt(8) !== 32) {
      throw this.error(`malformed status line ${JSON.stringify(statusLine.slice(0, 40))}`);
    }
    const minor = statusLine.charCodeAt(7) - 48;
    // status-code = 3DIGIT
    const code = statusLine.slice(9, 12);
    const status = isDigits(code) ? Number(code) : 0;
    if (minor < 0 || minor > 1 || status < 100 || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) {
      throw this.error(`malformed status line ${JSON.stringify(statusLine.slice(0, 40))}`);
    }
    const reason = statusLine.length > 13 ? statusLine.slice(13) : "";
    if (hasControl(reason)) throw this.error("control character in the reason phrase");
    const rawHeaders: string[] = [];
    let contentLength = -1;
    let codings: string[] | undefined;
    let connection: string | undefined;
    let keepAliveTimeout = -1;
    let at = lineEnd < 0 ? text.length : lineEnd + 2;
    while (at < text.length) {
      at = this.readField(text, at);
      const name = this.fieldName;
      const value = this.fieldValue;
      switch (name.length) {
        case 10:
          if (name.toLowerCase() === "connection") connection = connection === undefined ? value : `${connection}, ${value}`;
          else if (name.toLowerCase() === "keep-alive") keepAliveTimeout = parseKeepAliveTimeout(value, keepAliveTimeout);
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            const length = parseContentLength(value);
            if (contentLength >= 0 && length !== contentLength) throw this.error("conflicting Content-Length values");
            contentLength = length;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") {
            // One list across all the fields, empty elements ignored (RFC 9110 §5.6.1).
            codings ??= [];
            for (const part of value.split(",")) {
              const coding = ows(part).toLowerCase();
              if (coding !== "") codings.push(coding);
            }
          }
          break;
      }
      rawHeaders.push(name, value);
    }
    if (status < 200) {
      // Interim responses (100 Continue, 103 Early Hints) carry no body; the final one follows.
      if (status !== 101) return;
      if (!this.upgrade) throw this.error("upstream switched protocols on a plain request");
      // The head ends HTTP on this connection (RFC 9110 §7.8): no body, and never reused.
      this.switched = true;
      this.state = State.Done;
      this.sink.onHead({ status, reason, rawHeaders, keepAlive: false, keepAliveTimeout: -1 });
      return;
    }
    // `close` wins over `keep-alive` (RFC 9112 §9.3).
    let keepAlive = connection === undefined ? minor === 1 : !hasListToken(connection, "close") && (minor === 1 || hasListToken(connection, "keep-alive"));
    if (this.noBody || status === 204 || status === 304) {
      this.state = State.Done;
    } else if (codings !== undefined) {
      // The router passes bodies on de-chunked; any other coding would reach the client undeclared.
      if (codings.length > 1 || codings.some((c) => c !== "chunked")) throw this.error(`Transfer-Encoding ${JSON.stringify(codings.join(", "))} (only chunked is relayed)`);
      // Transfer-Encoding overrides Content-Length; a response that sent both is not trusted with the
      // connection again, nor one of HTTP/1.0, which has no Transfer-Encoding (RFC 9112 §6.1).
      if (contentLength >= 0 || minor === 0) keepAlive = false;
      this.state = codings.length > 0 ? State.ChunkSize : State.UntilClose;
      if (codings.length === 0) keepAlive = false;
    } else if (contentLength >= 0) {
      this.remaining = contentLength;
      this.state = contentLength === 0 ? State.Done : State.Length;
    } else {
      this.state = State.UntilClose;
      keepAlive = false;
    }
    this.sink.onHead({ status, reason, rawHeaders, keepAlive, keepAliveTimeout });
    if (this.state === State.Done) this.sink.onEnd();
  }
}

function parseContentLength(value: string): number {
  if (value.length > 0 && value.length <= 15 && isDigits(value)) return Number(value);
  // A list of identical values ("5, 5") is allowed by RFC 9110 §8.6; anything else must be digits.
  let length = -1;
  for (const part of value.split(",")) {
    const digits = ows(part);
    if (digits.length === 0 || digits.length > 15 || !isDigits(digits)) throw new UpstreamProtocolError("malformed Content-Length");
    const n = Number(digits);
    if (length >= 0 && n !== length) throw new UpstreamProtocolError("conflicting Content-Length values");
    length = n;
  }
  return length;
}

/** The last Keep-Alive value read and its timeout: an app sends the same one on every response. */
let lastKeepAlive = "";
let lastKeepAliveTimeout = -1;

function parseKeepAliveTimeout(value: string, previous: number): number {
  if (value === lastKeepAlive) return lastKeepAliveTimeout < 0 ? previous : lastKeepAliveTimeout;
  const timeout = keepAliveTimeoutOf(value);
  lastKeepAlive = value;
  lastKeepAliveTimeout = timeout;
  return timeout < 0 ? previous : timeout;
}

/** The `timeout=N` parameter of a Keep-Alive value; -1 when it has none. */
function keepAliveTimeoutOf(value: string): number {
  for (const part of value.split(",")) {
    const [key, v] = part.split("=");
    if (ows(key).toLowerCase() === "timeout" && v !== undefined) {
      const n = Number(ows(v));
      if (Number.isFinite(n) && n >= 0) return n;
    }
  }
  return -1;
}
