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

/** Largest status line plus header section accepted (Node's own server allows 16 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Largest chunk-size line (with extensions) or trailer section accepted. */
const MAX_LINE_BYTES = 8 * 1024;

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

export interface ResponseSink {
  /** A final (non-1xx) response head. Interim 1xx responses are read and skipped. */
  onHead(head: ResponseHead): void;
  /** A piece of the body, already de-chunked. `last` is true when it ends the body. */
  onBody(chunk: Buffer, last: boolean): void;
  /** The body ended (called after onBody(…, true), or alone for an empty body). */
  onEnd(): void;
}

/** Where the parser is within a response. */
const State = { Head: 0, Length: 1, ChunkSize: 2, ChunkData: 3, ChunkDataEnd: 4, Trailers: 5, UntilClose: 6, Done: 7 } as const;
type State = (typeof State)[keyof typeof State];

function isTokenChar(c: number): boolean {
  // RFC 9110 §5.6.2 tchar
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) ||
    c === 33 || (c >= 35 && c <= 39) || c === 42 || c === 43 || c === 45 || c === 46 || c === 94 || c === 95 || c === 96 || c === 124 || c === 126;
}

function hasListToken(value: string, token: string): boolean {
  if (value.length === token.length) return value.toLowerCase() === token;
  for (const part of value.split(",")) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * One response at a time: `push` bytes as they arrive; when the response is done, `reset` it for the
 * next request on the same connection (any bytes left over are an error: HTTP/1.1 without pipelining
 * gets exactly one response per request).
 */
export class ResponseParser {
  private state: State = State.Head;
  private pending: Buffer | null = null;
  private remaining = 0;
  private noBody = false;
  private sink: ResponseSink;
  /** Bytes of the current response seen so far (0 = nothing arrived yet: safe to retry elsewhere). */
  received = 0;

  constructor(sink: ResponseSink) {
    this.sink = sink;
  }

  /** Prepares for the next response. `head` is true for a HEAD request, whose response has no body. */
  reset(sink: ResponseSink, head: boolean): void {
    this.sink = sink;
    this.state = State.Head;
    this.pending = null;
    this.remaining = 0;
    this.noBody = head;
    this.received = 0;
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  /** The body runs until the connection closes (no length and not chunked). */
  get closeDelimited(): boolean {
    return this.state === State.UntilClose;
  }

  /** Feeds bytes from the connection; throws UpstreamProtocolError on a malformed response. */
  push(data: Buffer): void {
    this.received += data.length;
    let chunk = data;
    if (this.pending !== null) {
      chunk = Buffer.concat([this.pending, data]);
      this.pending = null;
    }
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      switch (this.state) {
        case State.Head: {
          const end = chunk.indexOf("\r\n\r\n", at, "latin1");
          if (end < 0) {
            if (n - at > MAX_HEAD_BYTES) throw new UpstreamProtocolError("response head is too large");
            this.pending = chunk.subarray(at);
            return;
          }
          if (end - at > MAX_HEAD_BYTES) throw new UpstreamProtocolError("response head is too large");
          const head = chunk.toString("latin1", at, end);
          at = end + 4;
          this.readHead(head);
          break;
        }
        case State.Length: {
          const piece = this.bodyPiece(chunk, at);
          at += piece.length;
          const last = this.remaining === 0;
          this.sink.onBody(piece, last);
          if (last) this.finish();
          break;
        }
        case State.ChunkSize: {
          const eol = this.lineEnd(chunk, at, "chunk size line");
          if (eol < 0) return;
          const size = parseChunkSize(chunk, at, eol);
          at = eol + 2;
          if (size === 0) {
            this.state = State.Trailers;
          } else {
            this.remaining = size;
            this.state = State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const piece = this.bodyPiece(chunk, at);
          at += piece.length;
          this.sink.onBody(piece, false);
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          if (n - at < 2) {
            this.pending = chunk.subarray(at);
            return;
          }
          if (chunk[at] !== 13 || chunk[at + 1] !== 10) throw new UpstreamProtocolError("chunk data is not followed by CRLF");
          at += 2;
          this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          // Trailer fields are read and dropped; the section ends with an empty line.
          const eol = this.lineEnd(chunk, at, "trailer line");
          if (eol < 0) return;
          const empty = eol === at;
          at = eol + 2;
          if (empty) {
            this.sink.onBody(EMPTY, true);
            this.finish();
          }
          break;
        }
        case State.UntilClose: {
          const piece = at === 0 ? chunk : chunk.subarray(at);
          at = n;
          this.sink.onBody(piece, false);
          break;
        }
        case State.Done:
          throw new UpstreamProtocolError("upstream sent bytes after the end of its response");
      }
    }
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

  /** The end of the line starting at `at`; -1 (the partial line kept for the next push) when it has not arrived. */
  private lineEnd(chunk: Buffer, at: number, what: string): number {
    const eol = chunk.indexOf("\r\n", at, "latin1");
    if (eol < 0) {
      if (chunk.length - at > MAX_LINE_BYTES) throw new UpstreamProtocolError(`${what} is too long`);
      this.pending = chunk.subarray(at);
    }
    return eol;
  }

  /** As much of the remaining body (or chunk) as `chunk` holds from `at`. */
  private bodyPiece(chunk: Buffer, at: number): Buffer {
    const take = Math.min(this.remaining, chunk.length - at);
    this.remaining -= take;
    return at === 0 && take === chunk.length ? chunk : chunk.subarray(at, at + take);
  }

  private finish(): void {
    this.state = State.Done;
    this.sink.onEnd();
  }

  private readHead(text: string): void {
    // Status line: HTTP-version SP status-code SP [reason-phrase] (RFC 9112 §4)
    const lineEnd = text.indexOf("\r\n");
    const statusLine = lineEnd < 0 ? text : text.slice(0, lineEnd);
    if (statusLine.length < 12 || !statusLine.startsWith("HTTP/1.") || statusLine.charCodeAt(8) !== 32) {
      throw new UpstreamProtocolError(`malformed status line ${JSON.stringify(statusLine.slice(0, 40))}`);
    }
    const minor = statusLine.charCodeAt(7) - 48;
    const status = Number(statusLine.slice(9, 12));
    if (minor < 0 || minor > 1 || !(status >= 100 && status <= 999) || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) {
      throw new UpstreamProtocolError(`malformed status line ${JSON.stringify(statusLine.slice(0, 40))}`);
    }
    const reason = statusLine.length > 13 ? statusLine.slice(13) : "";
    if (hasControl(reason)) throw new UpstreamProtocolError("control character in the reason phrase");
    const rawHeaders: string[] = [];
    let contentLength = -1;
    let chunked = false;
    let transferEncoding = false;
    let connection: string | undefined;
    let keepAliveTimeout = -1;
    let at = lineEnd < 0 ? text.length : lineEnd + 2;
    while (at < text.length) {
      let eol = text.indexOf("\r\n", at);
      if (eol < 0) eol = text.length;
      const colon = text.indexOf(":", at);
      if (colon <= at || colon > eol) {
        const c = text.charCodeAt(at);
        throw new UpstreamProtocolError(c === 32 || c === 9 ? "obsolete line folding in a response field" : "malformed response field line");
      }
      for (let i = at; i < colon; i++) if (!isTokenChar(text.charCodeAt(i))) throw new UpstreamProtocolError("malformed response field name");
      const name = text.slice(at, colon);
      const value = text.slice(colon + 1, eol).trim();
      if (hasControl(value)) throw new UpstreamProtocolError(`control character in response field ${name}`);
      at = eol + 2;
      switch (name.length) {
        case 10:
          if (name.toLowerCase() === "connection") connection = connection === undefined ? value : `${connection}, ${value}`;
          else if (name.toLowerCase() === "keep-alive") keepAliveTimeout = parseKeepAliveTimeout(value, keepAliveTimeout);
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            const length = parseContentLength(value);
            if (contentLength >= 0 && length !== contentLength) throw new UpstreamProtocolError("conflicting Content-Length values");
            contentLength = length;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") {
            transferEncoding = true;
            // Only a final "chunked" coding frames the body; anything else runs until close (RFC 9112 §6.3).
            const codings = value.split(",");
            chunked = codings[codings.length - 1].trim().toLowerCase() === "chunked";
          }
          break;
      }
      rawHeaders.push(name, value);
    }
    if (status < 200) {
      // Interim responses (100 Continue, 103 Early Hints) carry no body; the final one follows.
      if (status === 101) throw new UpstreamProtocolError("upstream switched protocols on a plain request");
      return;
    }
    let keepAlive = minor === 1 ? connection === undefined || !hasListToken(connection, "close") : connection !== undefined && hasListToken(connection, "keep-alive");
    if (this.noBody || status === 204 || status === 304) {
      this.state = State.Done;
    } else if (transferEncoding) {
      // Transfer-Encoding overrides Content-Length; a response that sent both is not trusted with the connection again.
      if (contentLength >= 0) keepAlive = false;
      this.state = chunked ? State.ChunkSize : State.UntilClose;
      if (!chunked) keepAlive = false;
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

const EMPTY = Buffer.alloc(0);

/** Any control character other than horizontal tab (RFC 9110 §5.5: field values exclude them). */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

function parseContentLength(value: string): number {
  if (value.length > 0 && value.length <= 15 && isDigits(value)) return Number(value);
  // A list of identical values ("5, 5") is allowed by RFC 9110 §8.6; anything else must be digits.
  let length = -1;
  for (const part of value.split(",")) {
    const digits = part.trim();
    if (digits.length === 0 || digits.length > 15 || !isDigits(digits)) throw new UpstreamProtocolError("malformed Content-Length");
    const n = Number(digits);
    if (length >= 0 && n !== length) throw new UpstreamProtocolError("conflicting Content-Length values");
    length = n;
  }
  return length;
}

function isDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function parseKeepAliveTimeout(value: string, previous: number): number {
  for (const part of value.split(",")) {
    const [key, v] = part.split("=");
    if (key.trim().toLowerCase() === "timeout" && v !== undefined) {
      const n = Number(v.trim());
      if (Number.isFinite(n) && n >= 0) return n;
    }
  }
  return previous;
}

/** chunk-size [ chunk-ext ] (RFC 9112 §7.1): hex digits, then nothing or extensions after ";". */
function parseChunkSize(buf: Buffer, start: number, end: number): number {
  let size = 0;
  let i = start;
  for (; i < end; i++) {
    const c = buf[i];
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else break;
    if (i - start >= 12) throw new UpstreamProtocolError("chunk size is too large");
    size = size * 16 + d;
  }
  if (i === start) throw new UpstreamProtocolError("malformed chunk size");
  // Whitespace before the extensions is tolerated (BWS), nothing else.
  while (i < end && (buf[i] === 32 || buf[i] === 9)) i++;
  if (i < end && buf[i] !== 59 /* ; */) throw new UpstreamProtocolError("malformed chunk size");
  for (; i < end; i++) if (buf[i] < 32 && buf[i] !== 9) throw new UpstreamProtocolError("control character in a chunk extension");
  return size;
}
