/**
 * What requests and responses share in HTTP/1.1 (RFC 9112): a head that ends with an empty line,
 * then a body framed by Content-Length (§6.2), by the chunked coding (§7.1), or (responses only) by
 * the end of the connection (§6.3). Incremental: feed it what the socket delivers, in pieces of any
 * size. Strict where leniency would let one message bleed into the next on a reused connection:
 * malformed chunk sizes, missing CRLFs and oversized lines are errors.
 *
 * A subclass reads the start line and fields (`readHead`) and picks the framing; this class reads the
 * body and passes it on de-chunked.
 */

/** Largest chunk-size line (with extensions) or trailer line accepted. */
const MAX_LINE_BYTES = 8 * 1024;

export const EMPTY = Buffer.alloc(0);

/** Where a body's bytes go. */
export interface BodySink {
  /** A piece of the body, already de-chunked. `last` is true when it ends the body. */
  onBody(chunk: Buffer, last: boolean): void;
  /** The body ended (called after onBody(…, true), or alone for an empty body). */
  onEnd(): void;
}

/** Where the parser is within a message. */
export const State = { Head: 0, Length: 1, ChunkSize: 2, ChunkData: 3, ChunkDataEnd: 4, Trailers: 5, UntilClose: 6, Done: 7 } as const;
export type State = (typeof State)[keyof typeof State];

export function isTokenChar(c: number): boolean {
  // RFC 9110 §5.6.2 tchar
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) ||
    c === 33 || (c >= 35 && c <= 39) || c === 42 || c === 43 || c === 45 || c === 46 || c === 94 || c === 95 || c === 96 || c === 124 || c === 126;
}

export function hasListToken(value: string, token: string): boolean {
  if (value.length === token.length) return value.toLowerCase() === token;
  for (const part of value.split(",")) if (ows(part).toLowerCase() === token) return true;
  return false;
}

/** Any control character other than horizontal tab (RFC 9110 §5.5: field values exclude them). */
export function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

export function isDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return s.length > 0;
}

export abstract class MessageParser<S extends BodySink> {
  protected state: State = State.Head;
  protected pending: Buffer | null = null;
  protected remaining = 0;
  /** Bytes of the current message seen so far. */
  received = 0;

  constructor(
    protected sink: S,
    /** Largest start line plus header section accepted. */
    private readonly maxHeadBytes: number,
  ) {}

  get done(): boolean {
    return this.state === State.Done;
  }

  /** The name and value of the field line readField read last. */
  protected fieldName = "";
  protected fieldValue = "";

  /**
   * Reads the field line starting at `at` in a head (RFC 9112 §5: a token name, a colon right after
   * it, a value without control characters) into fieldName and fieldValue; returns where the next
   * line starts. Folded lines and whitespace before the colon are errors.
   */
  protected readField(text: string, at: number): number {
    let eol = text.indexOf("\r\n", at);
    if (eol < 0) eol = text.length;
    const colon = text.indexOf(":", at);
    if (colon <= at || colon > eol) {
      const c = text.charCodeAt(at);
      throw this.error(c === 32 || c === 9 ? `obsolete line folding in a ${this.what} field` : `malformed ${this.what} field line`);
    }
    for (let i = at; i < colon; i++) if (!isTokenChar(text.charCodeAt(i))) throw this.error(`malformed ${this.what} field name`);
    const name = text.slice(at, colon);
    const value = trimOws(text, colon + 1, eol);
    if (hasControl(value)) throw this.error(`control character in ${this.what} field ${name}`);
    this.fieldName = name;
    this.fieldValue = value;
    return eol + 2;
  }

  /** Reads the start line and fields (`text` has no final empty line) and sets the framing. */
  protected abstract readHead(text: string): void;
  /** The error to throw for a malformed message; `tooLarge` for a head over the limit. */
  protected abstract error(message: string, tooLarge?: boolean): Error;
  /** Bytes after the end of the message, from `at`: kept, or an error. */
  protected abstract afterDone(chunk: Buffer, at: number): void;
  /** What the head is called in errors ("request", "response"). */
  protected abstract readonly what: string;

  /**
   * Where the bytes of an unfinished head or line gather as pieces arrive: `pending` ends where the
   * store's written bytes end, so each piece is copied once, not the whole of `pending` again.
   */
  private store: Buffer | null = null;
  private storeEnd = 0;
  /** Bytes at the start of `pending` already searched for the end of its head or line. */
  private scanned = 0;

  /** `pending` followed by `data`, appended in place when there is room. */
  private append(pending: Buffer, data: Buffer): Buffer {
    const store = this.store;
    const total = pending.length + data.length;
    if (store !== null && pending.buffer === store.buffer && pending.byteOffset + pending.length === store.byteOffset + this.storeEnd && this.storeEnd + data.length <= store.length) {
      data.copy(store, this.storeEnd);
      this.storeEnd += data.length;
      return store.subarray(this.storeEnd - total, this.storeEnd);
    }
    // Its own memory (not Buffer's shared pool), so nothing else ever lies after `pending`.
    const fresh = Buffer.allocUnsafeSlow(Math.max(4096, total * 2));
    pending.copy(fresh, 0);
    data.copy(fresh, pending.length);
    this.store = fresh;
    this.storeEnd = total;
    return fresh.subarray(0, total);
  }

  /** Feeds bytes from the connection; throws the subclass's error on a malformed message. */
  push(data: Buffer): void {
    this.read(data);
    // Nothing waits: the store is let go rather than kept by an idle connection.
    if (this.pending === null) this.store = null;
  }

  private read(data: Buffer): void {
    this.received += data.length;
    let chunk = data;
    let skip = 0;
    if (this.pending !== null) {
      chunk = data.length === 0 ? this.pending : this.append(this.pending, data);
      this.pending = null;
      skip = this.scanned;
    }
    this.scanned = 0;
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      switch (this.state) {
        case State.Head: {
          // The end may straddle what was searched before and what just arrived.
          const end = chunk.indexOf("\r\n\r\n", skip > 3 ? at + skip - 3 : at, "latin1");
          if (end < 0) {
            // A head at the limit may have up to 3 bytes of its final CRLFCRLF here.
            if (n - at > this.maxHeadBytes + 3) throw this.error(`${this.what} head is too large`, true);
            this.pending = chunk.subarray(at);
            this.scanned = n - at;
            return;
          }
          if (end - at > this.maxHeadBytes) throw this.error(`${this.what} head is too large`, true);
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
          const eol = this.lineEnd(chunk, at, skip, "chunk size line");
          if (eol < 0) return;
          const size = this.chunkSize(chunk, at, eol);
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
          if (chunk[at] !== 13 || chunk[at + 1] !== 10) throw this.error("chunk data is not followed by CRLF");
          at += 2;
          this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          // Trailer fields are read and dropped; the section ends with an empty line.
          const eol = this.lineEnd(chunk, at, skip, "trailer line");
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
          this.afterDone(chunk, at);
          return;
      }
      skip = 0;
    }
  }

  /**
   * The end of the line starting at `at`, searched from `skip` bytes on; -1 (the partial line kept
   * for the next push) when it has not arrived.
   */
  private lineEnd(chunk: Buffer, at: number, skip: number, what: string): number {
    const eol = chunk.indexOf("\r\n", skip > 1 ? at + skip - 1 : at, "latin1");
    if (eol < 0) {
      // A line at the limit may have its CR here.
      if (chunk.length - at > MAX_LINE_BYTES + 1) throw this.error(`${what} is too long`);
      this.pending = chunk.subarray(at);
      this.scanned = chunk.length - at;
    } else if (eol - at > MAX_LINE_BYTES) {
      throw this.error(`${what} is too long`);
    }
    return eol;
  }

  /** As much of the remaining body (or chunk) as `chunk` holds from `at`. */
  private bodyPiece(chunk: Buffer, at: number): Buffer {
    const take = Math.min(this.remaining, chunk.length - at);
    this.remaining -= take;
    return at === 0 && take === chunk.length ? chunk : chunk.subarray(at, at + take);
  }

  protected finish(): void {
    this.state = State.Done;
    this.sink.onEnd();
  }

  /** chunk-size [ chunk-ext ] (RFC 9112 §7.1): hex digits, then nothing or extensions after ";". */
  private chunkSize(buf: Buffer, start: number, end: number): number {
    let size = 0;
    let i = start;
    for (; i < end; i++) {
      const c = buf[i];
      let d: number;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      else break;
      if (i - start >= 12) throw this.error("chunk size is too large");
      size = size * 16 + d;
    }
    if (i === start) throw this.error("malformed chunk size");
    // Whitespace before the extensions is tolerated (BWS), nothing else.
    while (i < end && (buf[i] === 32 || buf[i] === 9)) i++;
    if (i < end && buf[i] !== 59 /* ; */) throw this.error("malformed chunk size");
    for (; i < end; i++) if (buf[i] < 32 && buf[i] !== 9) throw this.error("control character in a chunk extension");
    return size;
  }
}

/** The field value between `from` and `to` without surrounding spaces and tabs (RFC 9110 §5.5 OWS). */
function trimOws(text: string, from: number, to: number): string {
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--;
  return text.slice(from, to);
}

/**
 * `value` without the optional whitespace around it: spaces and tabs only (RFC 9110 §5.6.3), where
 * String.trim() would also take bytes such as 0xA0 that are part of a value.
 */
export function ows(value: string): string {
  return trimOws(value, 0, value.length);
}

/**
 * A request target in absolute form (`http://host/path`, RFC 9112 §3.2.2), split into its authority
 * and the origin form an app expects (`/path`); null for any other form. Its authority is the
 * request's host, whatever the Host field says. An empty authority or one with user info (RFC 9110
 * §4.2.4) is "malformed".
 */
export function splitAbsoluteTarget(url: string): { authority: string; path: string } | null | "malformed" {
  const scheme = url.charCodeAt(4) === 58 ? 4 : url.charCodeAt(5) === 58 ? 5 : -1;
  if (scheme < 0 || !url.startsWith("//", scheme + 1)) return null;
  const name = url.slice(0, scheme).toLowerCase();
  if (name !== "http" && name !== "https") return null;
  const start = scheme + 3;
  let end = start;
  while (end < url.length && url[end] !== "/" && url[end] !== "?") end++;
  const authority = url.slice(start, end);
  if (authority.length === 0 || authority.includes("@")) return "malformed";
  const rest = url.slice(end);
  return { authority, path: rest.length === 0 ? "/" : rest.startsWith("?") ? `/${rest}` : rest };
}

/** Replaces the value of every Host field in `rawHeaders` (name, value, …) with `host`, adding one if there is none. */
export function replaceHost(rawHeaders: string[], host: string): void {
  let found = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === 4 && rawHeaders[i].toLowerCase() === "host") {
      rawHeaders[i + 1] = host;
      found = true;
    }
  }
  if (!found) rawHeaders.push("Host", host);
}
