/**
 * The router's HTTPS front end: TLS with SNI (RFC 6066 §3), HTTP/2 negotiated by ALPN (RFC 7301,
 * RFC 9113 §3.2) with HTTP/1.1 as the fallback, in front of the same proxy as the plain HTTP port.
 *
 * Certificates come from the deck server (control API) and are picked per connection by the name the
 * client asks for; a host without one gets a self-signed certificate made once per router process,
 * so a browser sees a warning rather than a failed handshake while a certificate is being issued.
 */
import { webcrypto, randomBytes } from "node:crypto";
import type http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { isHostName, listenOn } from "../core/index.ts";
import type { ServedCertificate } from "../core/index.ts";
import { replaceHost, splitAbsoluteTarget } from "./http1-message.ts";
import { rawPlainText } from "./plain-answers.ts";
import type { ProxyServer } from "./proxy-server.ts";

/** Subject of the fallback certificate, so a client (and a test) can tell it from a real one. */
export const FALLBACK_SUBJECT = "CloudDeck self-signed fallback";

export interface KeyPair {
  cert: string;
  key: string;
}

/** A self-signed P-256 certificate for no particular host, valid for a year. */
export async function createSelfSignedCertificate(commonName = FALLBACK_SUBJECT): Promise<KeyPair> {
  x509.cryptoProvider.set(webcrypto as Crypto);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // A positive serial (RFC 5280 §4.1.2.2): clear the top bit.
    serialNumber: (randomBytes(16)[0]! & 0x7f).toString(16).padStart(2, "0") + randomBytes(15).toString("hex"),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60 * 60 * 1000),
    notAfter: new Date(now + 365 * 24 * 60 * 60 * 1000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString("pem"), key };
}

/**
 * Checks a certificate list from the control API or the certs file. Only a value that is not a list
 * is refused: an entry that is not `{hosts, cert, key}` is left out (one line each in `skipped`), so
 * one bad entry never stops every other certificate from being served.
 */
export function validateCertificates(value: unknown): { ok: true; certs: ServedCertificate[]; skipped: string[] } | { ok: false; message: string } {
  if (!Array.isArray(value)) return { ok: false, message: "certificates must be a JSON array of {hosts, cert, key}" };
  const certs: ServedCertificate[] = [];
  const skipped: string[] = [];
  for (const [i, item] of value.entries()) {
    const v = item as Partial<ServedCertificate> | null;
    if (v === null || typeof v !== "object") skipped.push(`certificate ${i}: expected {hosts, cert, key}`);
    else if (!Array.isArray(v.hosts) || v.hosts.length === 0 || !v.hosts.every((h) => typeof h === "string")) skipped.push(`certificate ${i}: hosts must be a non-empty array of names`);
    else if (typeof v.cert !== "string" || typeof v.key !== "string") skipped.push(`certificate for ${String(v.hosts[0]).slice(0, 80)}: cert and key must be PEM strings`);
    else certs.push({ hosts: v.hosts, cert: v.cert, key: v.key });
  }
  return { ok: true, certs, skipped };
}

/** One certificate chain and key; its TLS context is made at its first handshake (undefined until then, null when unusable). */
interface Served {
  cert: string;
  key: string;
  context?: tls.SecureContext | null;
}

/**
 * Host name → certificate. Built whole and swapped by one assignment, like the route table, so a
 * handshake sees the old set or the new one. TLS contexts are made when a handshake first needs one
 * and kept across replacements while the chain and key stay the same: with tens of thousands of
 * certificates, making them all at each change would hold up every request for a minute.
 */
export class CertStore {
  private exact = new Map<string, Served>();
  /** `*.example.com` is kept under `example.com`: it matches exactly one more label. */
  private wildcard = new Map<string, Served>();
  private byChain = new Map<string, Served>();
  private list: ServedCertificate[] = [];
  readonly fallback: KeyPair;
  private readonly fallbackContext: tls.SecureContext;
  private readonly log: (line: string) => void;

  constructor(fallback: KeyPair, log: (line: string) => void = () => {}) {
    this.fallback = fallback;
    this.fallbackContext = tls.createSecureContext(fallback);
    this.log = log;
  }

  /** A store with a freshly made fallback certificate. */
  static async create(log?: (line: string) => void): Promise<CertStore> {
    return new CertStore(await createSelfSignedCertificate(), log);
  }

  /**
   * Serves `certs` from now on. A name that is not a host name is left out (and a certificate left
   * with no name): returns one line for each name left out, for the log. Never throws.
   */
  replace(certs: readonly ServedCertificate[]): string[] {
    const exact = new Map<string, Served>();
    const wildcard = new Map<string, Served>();
    const byChain = new Map<string, Served>();
    const list: ServedCertificate[] = [];
    const skipped: string[] = [];
    for (const c of certs) {
      const hosts: string[] = [];
      for (const raw of c.hosts) {
        const host = raw.toLowerCase();
        if (isHostName(host, { wildcard: true })) hosts.push(host);
        else skipped.push(`${JSON.stringify(raw.slice(0, 80))} is not a host name`);
      }
      if (hosts.length === 0) continue;
      const known = this.byChain.get(c.cert);
      const served = known !== undefined && known.key === c.key ? known : { cert: c.cert, key: c.key };
      byChain.set(c.cert, served);
      for (const host of hosts) {
        if (host.startsWith("*.")) wildcard.set(host.slice(2), served);
        else exact.set(host, served);
      }
      list.push({ hosts, cert: c.cert, key: c.key });
    }
    this.exact = exact;
    this.wildcard = wildcard;
    this.byChain = byChain;
    this.list = list;
    return skipped;
  }

  certificates(): ServedCertificate[] {
    return this.list;
  }

  /** The context for an SNI name: exact match, then a wildcard one label up, then the fallback. */
  contextFor(servername: string | undefined): tls.SecureContext {
    if (!servername) return this.fallbackContext;
    let name = servername.toLowerCase();
    if (name.endsWith(".")) name = name.slice(0, -1);
    let served = this.exact.get(name);
    const dot = name.indexOf(".");
    if (served === undefined && dot > 0) served = this.wildcard.get(name.slice(dot + 1));
    return (served && this.contextOf(served, name)) ?? this.fallbackContext;
  }

  /** Makes the certificate's context once; an unusable one is logged once and leaves its names to the fallback. */
  private contextOf(served: Served, name: string): tls.SecureContext | null {
    if (served.context === undefined) {
      try {
        served.context = tls.createSecureContext({ cert: served.cert, key: served.key });
      } catch (e) {
        served.context = null;
        this.log(`certs: the certificate for ${name} is unusable (${(e as Error).message.split("\n")[0]}); serving the self-signed fallback for it`);
      }
    }
    return served.context;
  }
}

export interface TlsFrontendOptions {
  proxy: ProxyServer;
  certs: CertStore;
  log?: (line: string) => void;
}

export interface TlsFrontend {
  readonly server: http2.Http2SecureServer;
  listen(port: number, host: string): Promise<void>;
  /** Stops accepting, asks HTTP/2 clients to go away, waits for requests until the deadline, then cuts. */
  close(deadlineMs: number): Promise<void>;
}

/**
 * An HTTP/1.1 request with an absolute-form target (`GET https://host/path`) is for that host (RFC 9112
 * §3.2.2): its url becomes the origin form and its Host field that host, as on the plain port.
 * False for a target with an empty authority or user info.
 */
function useOriginForm(req: http.IncomingMessage): boolean {
  const url = req.url ?? "/";
  if (url.charCodeAt(0) === 47) return true;
  const target = splitAbsoluteTarget(url);
  if (target === "malformed") return false;
  if (target !== null) {
    req.url = target.path;
    replaceHost(req.rawHeaders, target.authority);
  }
  return true;
}

/** Requests one HTTP/2 connection may have open at once. */
export const MAX_CONCURRENT_STREAMS = 128;

/** The HTTPS server; requests go to `proxy` exactly as those on the plain port do, marked secure. */
export function createTlsFrontend(options: TlsFrontendOptions): TlsFrontend {
  const { proxy, certs } = options;
  const log = options.log ?? (() => {});
  const server = http2.createSecureServer({
    allowHTTP1: true,
    ALPNProtocols: ["h2", "http/1.1"],
    // Clients that send no SNI (an IP address in the URL) get the fallback.
    cert: certs.fallback.cert,
    key: certs.fallback.key,
    SNICallback: (servername, callback) => callback(null, certs.contextFor(servername)),
    // Slow clients: the handshake gets the header timeout of the plain port.
    handshakeTimeout: proxy.limits.headerTimeoutMs,
    // Requests at once on one HTTP/2 connection (nginx's http2_max_concurrent_streams is 128): Node's
    // default has no limit, so one connection could hold a request open on every app connection.
    settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
  });
  // The per-address connection cap counts HTTPS connections too (over it: closed before the handshake).
  server.on("connection", (socket: Socket) => proxy.admitConnection(socket, false));
  // Idle connections are closed by the proxy's sweep: admitConnection registers each one.
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let requests = 0;

  server.on("secureConnection", (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    if (socket.alpnProtocol !== "h2") waitingHead.set(socket, { since: Date.now(), bytes: socket.bytesRead, open: 0 });
  });
  // HTTP/1.1 over TLS is read by Node's HTTP server, whose header timeout does not run here: each
  // connection is timed from when it opens, or from its first byte after its requests are all read
  // and answered, to its next request. `since` is -1 while requests are open, 0 while idle.
  const waitingHead = new Map<tls.TLSSocket, { since: number; bytes: number; open: number }>();
  const headerTimer = setInterval(() => {
    const now = Date.now();
    const limit = proxy.limits.headerTimeoutMs;
    for (const [socket, wait] of waitingHead) {
      if (socket.destroyed) waitingHead.delete(socket);
      else if (wait.since < 0) continue;
      else if (wait.since === 0) {
        if (socket.bytesRead > wait.bytes) wait.since = now;
      } else if (now - wait.since >= limit) {
        waitingHead.delete(socket);
        proxy.refused(socket, 408, "header_timeout");
        rawPlainText(socket, 408, `request headers did not arrive within ${Math.round(limit / 1000)}s\n`);
        socket.destroySoon();
      }
    }
  }, Math.min(1000, proxy.limits.headerTimeoutMs));
  headerTimer.unref();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  // A failed handshake (a scanner, a client that distrusts the fallback) is routine, not news.
  server.on("tlsClientError", () => {});
  server.on("sessionError", (e: Error) => log(`https: session error: ${e.message}`));
  server.on("request", (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    requests++;
    res.once("close", () => requests--);
    // Node's HTTP/1 parser (allowHTTP1) accepts any `HTTP/d.d` request line, so a request claiming
    // HTTP/2.0 arrives here as an HTTP/1 message with httpVersionMajor 2 and no HTTP/2 stream. The
    // plain port answers such a request line 505 (RFC 9110 §15.6.6); so does this one.
    const version = req.httpVersion;
    if (!(req instanceof http2.Http2ServerRequest) && version !== "1.1" && version !== "1.0") {
      proxy.refused((req as http.IncomingMessage).socket, 505, "http_version_not_supported", `HTTP/${version}`);
      const body = "only HTTP/1.0 and HTTP/1.1 are served here\n";
      return void res.writeHead(505, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": body.length, Connection: "close" }).end(body);
    }
    if (req.httpVersionMajor === 1) {
      const wait = waitingHead.get(req.socket as tls.TLSSocket);
      if (wait !== undefined) {
        wait.open++;
        wait.since = -1;
        // Done once answered and its body read to the end (Node reads and drops what the app left).
        const done = () => {
          if (--wait.open > 0) return;
          wait.since = 0;
          wait.bytes = req.socket.bytesRead;
        };
        res.once("close", () => {
          if (req.complete) return done();
          const incoming = req as unknown as http.IncomingMessage;
          let once = false;
          const finish = () => { if (!once) { once = true; done(); } };
          incoming.once("end", finish);
          incoming.once("close", finish);
        });
      }
    }
    if (req.httpVersionMajor === 1 && !useOriginForm(req as unknown as http.IncomingMessage)) {
      proxy.refused(req.socket, 400, "bad_request");
      return void res.writeHead(400, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" }).end("malformed request target\n");
    }
    // The compatibility objects carry what the proxy reads (rawHeaders, url, method, socket, pipe).
    proxy.handleRequest(req as never, res as never, true);
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // The connection leaves HTTP: a tunnel is not waiting for a request.
    waitingHead.delete(socket as tls.TLSSocket);
    // Node's server takes up any Upgrade; the plain port's rule (RFC 9110 §7.8) is HTTP/1.1 without a
    // body. Such an offer cannot be served as HTTP from here, so it is refused.
    if (req.httpVersion !== "1.1" || req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0) {
      proxy.refused(req.socket, 400, "bad_request", `HTTP/${req.httpVersion}`);
      return rawPlainText(socket, 400, "an Upgrade is taken up only in HTTP/1.1 and on a request without a body\n");
    }
    if (!useOriginForm(req)) {
      proxy.refused(req.socket, 400, "bad_request");
      return rawPlainText(socket, 400, "malformed request target\n");
    }
    proxy.handleUpgrade(req as never, socket, head, true);
  });

  return {
    server,
    listen(port, host) {
      return listenOn(server, port, host);
    },
    async close(deadlineMs) {
      clearInterval(headerTimer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const until = Date.now() + deadlineMs;
      while (Date.now() < until && requests > 0) await new Promise((r) => setTimeout(r, 25));
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
