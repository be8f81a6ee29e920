/**
 * Generated inputs for fuzzing the router (fast-check arbitraries), one kind per way in:
 *  - `http1` / `https1`: raw bytes of one or more pipelined HTTP/1 requests, well-formed or not
 *    (request lines, fields, chunked bodies, absurd values), cut into pieces at arbitrary points;
 *  - `h2`: requests made with node:http2's client (pseudo-headers, fields, bodies, resets);
 *  - `h2-frames`: raw HTTP/2 frames (RFC 9113 §4) after the client preface.
 * Inputs are plain JSON (bytes as Latin-1 strings), so a crashing one is kept as a corpus file.
 */
import fc from "fast-check";

export type FuzzPath = "http1" | "https1" | "h2" | "h2-frames";
export const FUZZ_PATHS: readonly FuzzPath[] = ["http1", "https1", "h2", "h2-frames"];

/** How the client leaves after writing: half-close at once, wait for the answer first, or reset. */
export type Finish = "end" | "wait" | "reset";

export interface RawInput {
  /** Latin-1 strings, written one after the other (each its own write, so its own TCP segment or TLS record, mostly). */
  chunks: string[];
  finish: Finish;
}

export interface H2Stream {
  headers: Record<string, string | string[]>;
  body: string[];
  /** End the request without a body (END_STREAM on HEADERS). */
  endAfterHeaders: boolean;
  /** Reset the stream with this code after its body, instead of waiting for the answer. */
  reset: number | null;
}

export interface H2Input {
  streams: H2Stream[];
  /** Destroy the whole session once every stream was sent. */
  destroySession: boolean;
}

export type FuzzInput =
  | { path: "http1" | "https1"; input: RawInput }
  | { path: "h2"; input: H2Input }
  | { path: "h2-frames"; input: RawInput };

/** Hosts the fuzz router serves (see fuzz-harness.ts), and some it does not. */
export const FUZZ_HOSTS = ["app.fuzz.test", "paused.fuzz.test", "down.fuzz.test", "maint.fuzz.test", "limited.fuzz.test", "small.fuzz.test", "redirect.fuzz.test", "nowhere.test"];
/** Paths the fuzz upstream treats specially (see fuzz-harness.ts). */
export const FUZZ_PATHS_UPSTREAM = ["/", "/early", "/slow", "/big", "/stream", "/cut", "/ws", "/echo", "/.well-known/acme-challenge/x"];

const latin1 = (max: number) => fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: max });
const printable = (max: number) => fc.string({ unit: fc.integer({ min: 32, max: 126 }).map((c) => String.fromCharCode(c)), maxLength: max });
const token = (max: number) => fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~".split("")), minLength: 1, maxLength: max });
/** Sometimes a very long run of one character: limits on lines and heads. */
const absurd = fc.tuple(fc.constantFrom("a", "0", " ", "\t", "%", "/", "\xff"), fc.constantFrom(1_000, 8_200, 17_000, 70_000)).map(([c, n]) => c.repeat(n));

const method = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH") },
  { weight: 1, arbitrary: fc.constantFrom("CONNECT", "TRACE", "PRI", "G(T", "", "get") },
  { weight: 1, arbitrary: token(12) },
);
const target = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...FUZZ_PATHS_UPSTREAM) },
  { weight: 2, arbitrary: fc.constantFrom("*", "http://app.fuzz.test/x", "https://app.fuzz.test:1/", "http://", "http://@/", "//x", "app.fuzz.test:80", "/%00", "/a?b=c#d") },
  { weight: 1, arbitrary: printable(40).map((s) => `/${s}`) },
  { weight: 1, arbitrary: latin1(20) },
  { weight: 1, arbitrary: absurd.map((s) => `/${s}`) },
);
const version = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("HTTP/1.1", "HTTP/1.0") },
  { weight: 2, arbitrary: fc.constantFrom("HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0", "HTTX/1.1", "http/1.1", "HTTP/1.1 ", "HTTP/11", "") },
);
const host = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...FUZZ_HOSTS) }, { weight: 1, arbitrary: fc.constantFrom("", "APP.FUZZ.TEST.", "app.fuzz.test:8080", "[::1]", "a b", "app.fuzz.test, x") }, { weight: 1, arbitrary: latin1(20) });
const numberish = fc.oneof(
  fc.nat(200).map(String),
  fc.constantFrom("0", "-1", "1e3", " 5", "5 ", "0x10", "1, 1", "1,2", "99999999999999999999", "18446744073709551616", "", "+5"),
);
type Field = [string, string];
const field: fc.Arbitrary<Field> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constant("Host"), host) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom("Content-Length", "content-length"), numberish) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom("Transfer-Encoding", "transfer-encoding"), fc.constantFrom("chunked", "Chunked", "gzip", "gzip, chunked", "chunked, chunked", "identity", "")) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom("Connection", "connection"), fc.constantFrom("close", "keep-alive", "upgrade", "Upgrade, HTTP2-Settings", "close, x-foo", "host", "content-length", "transfer-encoding", "te, x-request-id")) },
  { weight: 1, arbitrary: fc.tuple(fc.constant("Upgrade"), fc.constantFrom("websocket", "h2c", "", "HTTP/2.0")) },
  { weight: 1, arbitrary: fc.tuple(fc.constant("Expect"), fc.constantFrom("100-continue", "100-Continue", "magic", "")) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("X_Forwarded_For", "X-Forwarded-For", "X_Real_IP", "X-Request-Id", "x_request_id", "X-Forwarded-Proto", "Forwarded", "TE", "Trailer", "Keep-Alive", "Proxy-Connection"), printable(30)) },
  { weight: 2, arbitrary: fc.tuple(token(20), printable(40)) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(token(8), latin1(8)), latin1(30)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("X-Big", "Host", "Content-Length", "Cookie"), absurd) },
);
const eol = fc.oneof({ weight: 12, arbitrary: fc.constant("\r\n") }, { weight: 1, arbitrary: fc.constantFrom("\n", "\r", "\r\r\n", "") });
const separator = fc.oneof({ weight: 8, arbitrary: fc.constant(": ") }, { weight: 1, arbitrary: fc.constantFrom(":", " : ", ":\t", "", "::", ": \r\n ") });

/** A chunked body: chunks with right or wrong sizes, extensions, a last chunk, trailers. */
const chunkedBody = fc.record({
  chunks: fc.array(fc.tuple(latin1(40), fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom("0", "ffffffffffffffff", "-1", "x", "1 ", "10000000000000", "") })), { maxLength: 5 }),
  extension: fc.constantFrom("", ";a=b", ";" + "e".repeat(9000), " ;x"),
  last: fc.constantFrom("0\r\n\r\n", "0\r\nX-Trailer: 1\r\n\r\n", "0\r\n", "", "0\r\nHost: evil\r\n\r\n", `0\r\n${"T: v\r\n".repeat(2000)}\r\n`),
}).map(({ chunks, extension, last }) => chunks.map(([data, size]) => `${size ?? data.length.toString(16)}${extension}\r\n${data}\r\n`).join("") + last);

const body = fc.oneof({ weight: 3, arbitrary: fc.constant("") }, { weight: 2, arbitrary: latin1(60) }, { weight: 2, arbitrary: chunkedBody }, { weight: 1, arbitrary: fc.constantFrom("x".repeat(70_000), "\r\n", "\r\n\r\n") });

/** One request: mostly well-formed, with a Content-Length that matches its body when it has one. */
const request = fc.record({ method, target, version, fields: fc.array(field, { maxLength: 8 }), eol, separator, body, fixLength: fc.boolean(), withHost: fc.boolean() })
  .map(({ method: m, target: t, version: v, fields, eol: e, separator: sep, body: b, fixLength, withHost }) => {
    const all: Field[] = withHost ? [["Host", "app.fuzz.test"], ...fields] : fields;
    if (fixLength && b.length > 0 && !all.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n))) all.push(["Content-Length", String(b.length)]);
    return `${m} ${t} ${v}${e}${all.map(([n, val]) => `${n}${sep}${val}${e}`).join("")}${e}${b}`;
  });

/** Byte-level damage: a byte replaced, inserted or removed at a position given as a fraction of the length. */
const mutation = fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), kind: fc.constantFrom("replace", "insert", "delete"), byte: fc.integer({ min: 0, max: 255 }) });

interface Mutation {
  at: number;
  kind: string;
  byte: number;
}

function mutate(text: string, mutations: readonly Mutation[]): string {
  let out = text;
  for (const m of mutations) {
    const i = Math.min(out.length, Math.floor(m.at * out.length));
    const c = String.fromCharCode(m.byte);
    if (m.kind === "insert") out = out.slice(0, i) + c + out.slice(i);
    else if (m.kind === "replace") out = out.slice(0, i) + c + out.slice(i + 1);
    else out = out.slice(0, i) + out.slice(i + 1);
  }
  return out;
}

/** Cuts `text` at the given fractions of its length (sorted, deduplicated). */
function split(text: string, cuts: readonly number[]): string[] {
  const at = [...new Set(cuts.map((f) => Math.floor(f * text.length)))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const i of at) {
    if (i > from) pieces.push(text.slice(from, i));
    from = Math.max(from, i);
  }
  pieces.push(text.slice(from));
  return pieces.filter((p) => p.length > 0);
}

const finish = fc.constantFrom<Finish>("wait", "wait", "end", "reset");
const cuts = fc.oneof({ weight: 3, arbitrary: fc.constant<number[]>([]) }, { weight: 2, arbitrary: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }) });

/** Raw HTTP/1 input: pipelined requests, maybe damaged, maybe garbage after them, cut into pieces. */
export const rawHttp1Input: fc.Arbitrary<RawInput> = fc.record({
  requests: fc.array(request, { minLength: 1, maxLength: 4 }),
  tail: fc.oneof({ weight: 4, arbitrary: fc.constant("") }, { weight: 1, arbitrary: latin1(30) }),
  mutations: fc.oneof({ weight: 3, arbitrary: fc.constant<Mutation[]>([]) }, { weight: 1, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 4 }) }),
  cuts,
  finish,
}).map(({ requests, tail, mutations, cuts: c, finish: f }) => ({ chunks: split(mutate(requests.join("") + tail, mutations), c), finish: f }));

const h2Header = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(token(12).map((s) => s.toLowerCase()), printable(30)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("x_forwarded_for", "x-forwarded-for", "x-request-id", "x_real_ip", "cookie", "content-type", "host", "te", "expect", "content-length", "upgrade"), printable(30)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("content-length", "x-a"), numberish) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("x-big", "cookie"), absurd) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("x-crlf", "x-nul"), fc.constantFrom("a\r\nInjected: 1", "a\nb", "a\0b", "\x7f", "é")) },
);
const h2Stream: fc.Arbitrary<H2Stream> = fc.record({
  method: fc.option(fc.oneof(method, fc.constantFrom("GET ", "G\nT")), { nil: undefined }),
  path: fc.option(fc.oneof(target, fc.constantFrom("", "a b", "/\r\nHost: x", "/x y")), { nil: undefined }),
  authority: fc.option(fc.oneof(host, fc.constant("app.fuzz.test")), { nil: undefined }),
  scheme: fc.option(fc.constantFrom("https", "http", "ftp", ""), { nil: undefined }),
  fields: fc.array(h2Header, { maxLength: 6 }),
  body: fc.array(fc.oneof(latin1(50), fc.constant("y".repeat(70_000))), { maxLength: 3 }),
  endAfterHeaders: fc.boolean(),
  reset: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 2, 7, 8, 11) }),
}).map(({ method: m, path, authority, scheme, fields, body: b, endAfterHeaders, reset }) => {
  const headers: Record<string, string | string[]> = {};
  if (m !== undefined) headers[":method"] = m;
  if (path !== undefined) headers[":path"] = path;
  if (authority !== undefined) headers[":authority"] = authority;
  if (scheme !== undefined) headers[":scheme"] = scheme;
  for (const [n, v] of fields) {
    const had = headers[n];
    headers[n] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v];
  }
  return { headers, body: endAfterHeaders ? [] : b, endAfterHeaders, reset };
});

export const h2Input: fc.Arbitrary<H2Input> = fc.record({ streams: fc.array(h2Stream, { minLength: 1, maxLength: 4 }), destroySession: fc.boolean() });

/** HPACK literal header field without indexing, new name (RFC 7541 §6.2.2), with plain (not Huffman) strings. */
function hpackLiteral(name: string, value: string): string {
  return "\x00" + hpackString(name) + hpackString(value);
}

/** An HPACK string literal: a 7-bit prefix integer length (RFC 7541 §5.1, §5.2). */
function hpackString(s: string): string {
  let out = "";
  if (s.length < 127) out += String.fromCharCode(s.length);
  else {
    out += String.fromCharCode(127);
    let rest = s.length - 127;
    while (rest >= 128) {
      out += String.fromCharCode((rest % 128) + 128);
      rest = Math.floor(rest / 128);
    }
    out += String.fromCharCode(rest);
  }
  return out + s;
}

/** One frame: 24-bit length, type, flags, 31-bit stream id (RFC 9113 §4.1). */
export function frame(type: number, flags: number, streamId: number, payload: string, lengthOverride?: number): string {
  const n = lengthOverride ?? payload.length;
  const id = streamId >>> 0;
  return String.fromCharCode((n >> 16) & 255, (n >> 8) & 255, n & 255, type & 255, flags & 255, (id >>> 24) & 255, (id >>> 16) & 255, (id >>> 8) & 255, id & 255) + payload;
}

export const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** A header block for HEADERS / CONTINUATION / PUSH_PROMISE: mostly literal fields, sometimes raw bytes or indexed ones. */
const headerBlock = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(
    fc.constantFrom("GET", "POST", "HEAD", "CONNECT", ""),
    fc.constantFrom("/", "/early", "/echo", "", "*", "/x y"),
    fc.constantFrom("app.fuzz.test", "nowhere.test", "small.fuzz.test", ""),
    fc.array(h2Header, { maxLength: 4 }),
    fc.boolean(),
  ).map(([m, p, a, fields, withScheme]) =>
    hpackLiteral(":method", m) + hpackLiteral(":path", p) + (withScheme ? hpackLiteral(":scheme", "https") : "") + hpackLiteral(":authority", a) + fields.map(([n, v]) => hpackLiteral(n, v)).join("")) },
  { weight: 1, arbitrary: latin1(40) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0x80, max: 0xff }), { maxLength: 8 }).map((a) => String.fromCharCode(...a)) },
);

const streamId = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(1, 3, 5) }, { weight: 1, arbitrary: fc.constantFrom(0, 2, 0x7fffffff, 0xffffffff) }, { weight: 1, arbitrary: fc.nat(1000) });
const settingsPayload = fc.array(fc.tuple(fc.integer({ min: 0, max: 9 }), fc.oneof(fc.constantFrom(0, 1, 16383, 16384, 16777215, 0x7fffffff, 0xffffffff), fc.nat())), { maxLength: 5 })
  .map((pairs) => pairs.map(([id, v]) => String.fromCharCode((id >> 8) & 255, id & 255, (v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255)).join(""));

const anyFrame = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(streamId, headerBlock, fc.constantFrom(4, 5, 0, 1, 0x24, 0x2d, 0x08)).map(([id, block, flags]) => frame(1, flags, id, flags & 0x08 ? `\x02${block}\0\0` : flags & 0x20 ? `\0\0\0\x03\x10${block}` : block)) },
  { weight: 3, arbitrary: fc.tuple(streamId, latin1(60), fc.constantFrom(0, 1, 8, 9)).map(([id, data, flags]) => frame(0, flags, id, flags & 8 ? `\x05${data}` : data)) },
  { weight: 1, arbitrary: fc.tuple(streamId, headerBlock, fc.constantFrom(0, 4)).map(([id, block, flags]) => frame(9, flags, id, block)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 0, 1), settingsPayload, fc.constantFrom(0, 1)).map(([id, p, flags]) => frame(4, flags, id, p)) },
  { weight: 1, arbitrary: fc.tuple(streamId, fc.integer({ min: 0, max: 0xffffffff })).map(([id, code]) => frame(3, 0, id, String.fromCharCode((code >>> 24) & 255, (code >>> 16) & 255, (code >>> 8) & 255, code & 255))) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 1, 3), fc.integer({ min: 0, max: 0x7fffffff })).map(([id, inc]) => frame(8, 0, id, String.fromCharCode((inc >>> 24) & 255, (inc >>> 16) & 255, (inc >>> 8) & 255, inc & 255))) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 1), latin1(8), fc.constantFrom(0, 1)).map(([id, p, flags]) => frame(6, flags, id, p)) },
  { weight: 1, arbitrary: fc.tuple(streamId, latin1(20)).map(([id, p]) => frame(7, 0, id, p)) },
  { weight: 1, arbitrary: fc.tuple(streamId, latin1(5)).map(([id, p]) => frame(2, 0, id, p)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), streamId, latin1(20), fc.option(fc.constantFrom(0, 1, 16385, 0xffffff), { nil: undefined })).map(([type, flags, id, p, n]) => frame(type, flags, id, p, n)) },
);

/** Raw HTTP/2: the preface (sometimes damaged), a SETTINGS frame, then frames, cut into pieces. */
export const rawH2Input: fc.Arbitrary<RawInput> = fc.record({
  preface: fc.oneof({ weight: 8, arbitrary: fc.constant(H2_PREFACE) }, { weight: 1, arbitrary: fc.constantFrom("PRI * HTTP/2.0\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", H2_PREFACE.toLowerCase()) }),
  settings: fc.oneof({ weight: 4, arbitrary: fc.constant(frame(4, 0, 0, "")) }, { weight: 1, arbitrary: settingsPayload.map((p) => frame(4, 0, 0, p)) }, { weight: 1, arbitrary: fc.constant("") }),
  frames: fc.array(anyFrame, { minLength: 1, maxLength: 8 }),
  cuts,
  finish,
}).map(({ preface, settings, frames, cuts: c, finish: f }) => ({ chunks: split(preface + settings + frames.join(""), c), finish: f }));

export function inputArbitrary(path: FuzzPath): fc.Arbitrary<FuzzInput> {
  switch (path) {
    case "http1":
    case "https1":
      return rawHttp1Input.map((input) => ({ path, input }));
    case "h2":
      return h2Input.map((input) => ({ path, input }));
    case "h2-frames":
      return rawH2Input.map((input) => ({ path, input }));
  }
}
