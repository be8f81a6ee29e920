/**
 * Header rewriting for the proxy, one pass over `rawHeaders` each way (RFC 9110 §7.6.1 hop-by-hop
 * fields, §7.6.3 forwarding; X-Forwarded-* as de-facto standard). Runs on every request: no regex,
 * no header objects, names compared by length first.
 */
import { randomUUID } from "node:crypto";
import { ows } from "./http1-message.ts";

function sameName(name: string, lower: string): boolean {
  return name === lower || name.toLowerCase() === lower;
}

/**
 * True for `name` spelled as `dashed` (lowercase, with dashes) with one or more underscores in place
 * of its dashes, in any case: `X_Forwarded_For`, `x-forwarded_for`. Many frameworks (CGI, WSGI,
 * Rack, PHP) map `-` and `_` alike to `HTTP_X_FORWARDED_FOR`, so such a field from a client would
 * read as the forwarding field deck sets; nginx drops them for the same reason. Called only for
 * names of `dashed`'s length.
 */
function isUnderscoreSpelling(name: string, dashed: string): boolean {
  let underscore = false;
  for (let i = 0; i < dashed.length; i++) {
    const want = dashed.charCodeAt(i);
    let c = name.charCodeAt(i);
    if (want === 45 /* - */) {
      if (c === 95 /* _ */) underscore = true;
      else if (c !== 45) return false;
      continue;
    }
    if (c >= 65 && c <= 90) c += 32;
    if (c !== want) return false;
  }
  return underscore;
}

/** A client-supplied request id is kept only when it is short and printable without escaping. */
function isSaneRequestId(id: string): boolean {
  const n = id.length;
  if (n === 0 || n > 128) return false;
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i);
    // letters, digits, and - . _ : / + =
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95 || c === 58 || c === 47 || c === 43 || c === 61)) return false;
  }
  return true;
}

/** What one pass over the client's headers produced. */
export interface ForwardHeaders {
  headers: string[];
  host: string | undefined;
  requestId: string;
  hasBody: boolean;
  /** The declared Content-Length; -1 when absent (no body, or a chunked one). */
  contentLength: number;
  /** The request arrived over TLS. */
  secure: boolean;
  /** The client's address as the connection had it when the request arrived. */
  client: string | undefined;
  /** The `X-Deck-Probe` field (deck's own uptime check when it holds the router's secret; never passed on). */
  probe?: string;
}

/**
 * Copies the client's headers for the upstream: drops hop-by-hop headers (RFC 9110 §7.6.1), including
 * those named in Connection, keeps Host, and sets X-Forwarded-For/-Proto/-Host and X-Request-Id.
 * Underscore spellings of the forwarding and request-id fields (`X_Forwarded_For`, `X_Real_IP` …)
 * are dropped: see isUnderscoreSpelling.
 * For an upgrade request, Connection and Upgrade are forwarded since they carry the handshake.
 */
export function buildForwardHeaders(raw: string[], remoteAddress: string | undefined, upgrade: boolean, secure = false): ForwardHeaders {
  const out: string[] = [];
  let host: string | undefined;
  let forwardedFor: string | undefined;
  let requestId: string | undefined;
  let connection: string | undefined;
  let upgradeValue: string | undefined;
  let hasBody = false;
  let contentLength = -1;
  let chunked = false;
  let probe: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    // HTTP/2 pseudo-headers: :authority stands for Host; the others are carried by the request line.
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ":authority" && host === undefined) { host = value; out.push("Host", value); }
      continue;
    }
    switch (name.length) {
      case 2:
        if (sameName(name, "te")) continue;
        break;
      case 4:
        if (sameName(name, "host")) {
          if (host !== undefined) continue;
          host = value;
        }
        break;
      case 7:
        if (sameName(name, "upgrade")) { upgradeValue = value; continue; }
        if (sameName(name, "trailer")) continue;
        break;
      case 9:
        if (isUnderscoreSpelling(name, "x-real-ip")) continue;
        break;
      case 10:
        if (sameName(name, "connection")) { connection = connection === undefined ? value : `${connection}, ${value}`; continue; }
        if (sameName(name, "keep-alive")) continue;
        break;
      case 12:
        if (sameName(name, "x-request-id")) { requestId = value; continue; }
        // deck's own uptime check: noted, not passed on.
        if (sameName(name, "x-deck-probe")) { probe = value; continue; }
        if (isUnderscoreSpelling(name, "x-request-id")) continue;
        break;
      case 14:
        if (sameName(name, "content-length")) {
          contentLength = Number(value);
          if (value !== "0") hasBody = true;
          continue;
        }
        break;
      case 15:
        if (sameName(name, "x-forwarded-for")) { forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`; continue; }
        if (isUnderscoreSpelling(name, "x-forwarded-for")) continue;
        break;
      case 16:
        if (sameName(name, "x-forwarded-host") || sameName(name, "proxy-connection")) continue;
        if (isUnderscoreSpelling(name, "x-forwarded-host") || isUnderscoreSpelling(name, "x-forwarded-port")) continue;
        break;
      case 17:
        if (sameName(name, "x-forwarded-proto") || isUnderscoreSpelling(name, "x-forwarded-proto")) continue;
        if (sameName(name, "transfer-encoding")) {
          chunked = true;
          hasBody = true;
          continue;
        }
        break;
      case 19:
        if (sameName(name, "proxy-authorization")) continue;
        break;
    }
    out.push(name, value);
  }
  if (connection !== undefined) dropConnectionListed(out, connection);
  // The framing goes out as the router read it (the client's request reader accepts only chunked,
  // or one length), added after the Connection-listed fields are dropped so no client can remove it.
  if (chunked) out.push("Transfer-Encoding", "chunked");
  else if (contentLength >= 0) out.push("Content-Length", String(contentLength));
  if (requestId === undefined || !isSaneRequestId(requestId)) requestId = randomUUID();
  const client = remoteAddress ?? "unknown";
  out.push(
    "X-Forwarded-For", forwardedFor === undefined ? client : `${forwardedFor}, ${client}`,
    "X-Forwarded-Proto", secure ? "https" : "http",
    "X-Request-Id", requestId,
  );
  if (host !== undefined) out.push("X-Forwarded-Host", host);
  if (upgrade && upgradeValue !== undefined) out.push("Connection", "Upgrade", "Upgrade", upgradeValue);
  return { headers: out, host, requestId, hasBody, contentLength, secure, client: remoteAddress, ...(probe !== undefined ? { probe } : {}) };
}

/** Removes headers the sender listed in Connection (other than the usual close/keep-alive/upgrade). */
function dropConnectionListed(headers: string[], connection: string): void {
  // The usual values name no header: nothing to drop.
  if (connection.length === 10 || connection.length === 5) {
    const lower = connection.toLowerCase();
    if (lower === "keep-alive" || lower === "close") return;
  }
  let listed: string[] | undefined;
  for (const token of connection.split(",")) {
    const t = ows(token).toLowerCase();
    // Host is end-to-end whatever a sender says (RFC 9110 §7.2); the rest name no field.
    if (t === "" || t === "close" || t === "keep-alive" || t === "upgrade" || t === "host") continue;
    (listed ??= []).push(t);
  }
  if (!listed) return;
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (listed.includes(headers[i].toLowerCase())) headers.splice(i, 2);
  }
}

/** Copies the upstream's response headers for the client, minus hop-by-hop ones, plus X-Request-Id. */
export function buildResponseHeaders(raw: string[], requestId: string): { headers: string[]; hasLength: boolean } {
  const out: string[] = [];
  let connection: string | undefined;
  let length: string | undefined;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    switch (name.length) {
      case 2:
        if (sameName(name, "te")) continue;
        break;
      case 7:
        if (sameName(name, "upgrade") || sameName(name, "trailer")) continue;
        break;
      case 10:
        if (sameName(name, "connection")) { connection = raw[i + 1]; continue; }
        if (sameName(name, "keep-alive")) continue;
        break;
      case 12:
        if (sameName(name, "x-request-id")) continue;
        break;
      case 14:
        // One value (a list of equal ones was checked by the response reader), written once below.
        if (sameName(name, "content-length")) {
          length ??= ows(raw[i + 1].split(",")[0]);
          continue;
        }
        break;
      case 16:
        if (sameName(name, "proxy-connection")) continue;
        break;
      case 17:
        // The client connection gets its own framing (chunked, or close-delimited for HTTP/1.0).
        if (sameName(name, "transfer-encoding")) {
          chunked = true;
          continue;
        }
        break;
      case 18:
        if (sameName(name, "proxy-authenticate")) continue;
        break;
    }
    out.push(name, raw[i + 1]);
  }
  if (connection !== undefined) dropConnectionListed(out, connection);
  // A body framed by Transfer-Encoding was read de-chunked: its Content-Length (if the app sent both) is
  // not its length (RFC 9112 §6.3), so it is dropped rather than passed on to misframe the client's response.
  const hasLength = length !== undefined && !chunked;
  if (hasLength) out.push("Content-Length", length!);
  out.push("X-Request-Id", requestId);
  return { headers: out, hasLength };
}

/** True when a string could break out of its line in an HTTP/1.1 head. */
function hasLineBreak(s: string): boolean {
  return s.includes("\r") || s.includes("\n") || s.includes("\0");
}

/**
 * The request line and header section for the upstream (RFC 9112 §3, §5); null when a field cannot
 * be written safely. `check` for requests that no HTTP/1.1 parser has read: HTTP/2 ones arrive as
 * free-form strings.
 */
export function formatRequestHead(method: string, path: string, headers: readonly string[], check: boolean): string | null {
  if (check && (hasLineBreak(method) || hasLineBreak(path) || path.includes(" "))) return null;
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    if (check && (hasLineBreak(headers[i]) || hasLineBreak(headers[i + 1]))) return null;
    head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  }
  return `${head}\r\n`;
}
