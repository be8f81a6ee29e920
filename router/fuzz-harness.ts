/**
 * Runs generated inputs (fuzz-inputs.ts) against a real router in this process, over real sockets:
 * the plain port, HTTPS/1.1 and HTTP/2 of the TLS front end, in front of a real upstream with a few
 * awkward behaviours. An input passes when the router raised no exception (none escaped, none
 * caught by its last-resort guard), every answer was a well-formed HTTP response or a closed
 * connection, and the router answers a normal request afterwards.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import type { FuzzInput, H2Input, RawInput } from "./fuzz-inputs.ts";
import { createProxyServer, INTERNAL_ERROR } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

export interface Finding {
  kind: "crash" | "malformed_answer" | "stopped_answering";
  detail: string;
}

export interface FuzzRouter {
  httpPort: number;
  httpsPort: number;
  close(): Promise<void>;
  /** Exceptions since the last call: escaped ones and those the router's guard caught and logged. */
  takeErrors(): string[];
}

/** How long a client waits for more of an answer before it gives up on the connection. */
const QUIET_MS = 150;
const INPUT_DEADLINE_MS = 3_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The upstream app: answers by path, some of them in ways a proxy finds hard. */
function upstreamHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = (req.url ?? "/").split("?")[0];
  res.on("error", () => {});
  req.on("error", () => {});
  if (path === "/early") return void res.end("early");
  if (path === "/cut") {
    res.writeHead(200, { "Content-Length": 100 });
    res.write("part");
    return void setImmediate(() => res.destroy());
  }
  if (path === "/bad") {
    req.socket.end("HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    if (path === "/slow") return void setTimeout(() => res.end("slow"), 50);
    if (path === "/big") return void res.end(Buffer.alloc(200_000, 0x61));
    if (path === "/echo") return void res.end(Buffer.concat(chunks));
    if (path === "/stream") {
      res.write("one");
      setTimeout(() => res.end("two"), 20);
      return;
    }
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 3 });
    res.end("app");
  });
}

/** Starts the router (plain port and TLS front end) and its upstream on free ports. */
export async function startFuzzRouter(): Promise<FuzzRouter> {
  const upstream = http.createServer(upstreamHandler);
  const upstreamSockets = new Set<net.Socket>();
  upstream.on("connection", (s: net.Socket) => {
    upstreamSockets.add(s);
    s.on("close", () => upstreamSockets.delete(s));
  });
  upstream.on("upgrade", (req, socket: net.Socket) => {
    socket.on("error", () => {});
    if (req.url !== "/ws") return void socket.destroy();
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    socket.pipe(socket);
  });
  upstream.on("clientError", (_e, socket: net.Socket) => socket.destroy());
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const app = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  // A port nothing listens on: bound, then released.
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const downPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));

  const table = new RouteTable([
    { app: "app", hosts: ["app.fuzz.test"], upstreams: [app] },
    { app: "paused", hosts: ["paused.fuzz.test"], upstreams: [], settings: { paused: true } },
    { app: "down", hosts: ["down.fuzz.test"], upstreams: [`127.0.0.1:${downPort}`] },
    { app: "maint", hosts: ["maint.fuzz.test"], upstreams: [app], settings: { maintenance: true } },
    { app: "limited", hosts: ["limited.fuzz.test"], upstreams: [app], settings: { rateLimitRps: 1, rateLimitBurst: 1 } },
    { app: "small", hosts: ["small.fuzz.test"], upstreams: [app], settings: { maxBodyBytes: 100 } },
    { app: "redirect", hosts: ["redirect.fuzz.test"], upstreams: [app], settings: { redirectHttps: true, hsts: true } },
  ]);
  const errors: string[] = [];
  const log = (line: string) => {
    if (line.startsWith(INTERNAL_ERROR)) errors.push(line);
  };
  const proxy = createProxyServer({
    table, log, httpsPort: 443,
    limits: { rateLimitRps: 0, headerTimeoutMs: 2_000, bodyTimeoutMs: 2_000, idleTimeoutMs: 5_000, pauseTimeoutMs: 300, maxBodyBytes: 1024 * 1024 },
  });
  await proxy.listen(0, "127.0.0.1");
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create(), log });
  await frontend.listen(0, "127.0.0.1");

  const escaped = (e: unknown) => errors.push(`escaped: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.on("uncaughtException", escaped);
  process.on("unhandledRejection", escaped);
  return {
    httpPort: (proxy.server.address() as AddressInfo).port,
    httpsPort: (frontend.server.address() as AddressInfo).port,
    takeErrors: () => errors.splice(0),
    async close() {
      process.off("uncaughtException", escaped);
      process.off("unhandledRejection", escaped);
      await Promise.all([proxy.close(0), frontend.close(0)]);
      for (const s of upstreamSockets) s.destroy();
      await new Promise((r) => upstream.close(r));
    },
  };
}

function connect(port: number, secure: boolean, alpn: string[]): net.Socket {
  const socket = secure
    ? tls.connect({ host: "127.0.0.1", port, servername: "app.fuzz.test", rejectUnauthorized: false, ALPNProtocols: alpn })
    : net.connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  return socket;
}

/** Writes the input's pieces on one connection and returns every byte that came back. */
async function runRaw(port: number, secure: boolean, alpn: string[], input: RawInput): Promise<Buffer | "refused"> {
  const socket = connect(port, secure, alpn);
  const received: Buffer[] = [];
  let lastData = Date.now();
  let closed = false;
  socket.on("data", (d: Buffer) => {
    received.push(d);
    lastData = Date.now();
  });
  socket.on("close", () => (closed = true));
  const ready = await new Promise<boolean>((resolve) => {
    socket.once(secure ? "secureConnect" : "connect", () => resolve(true));
    socket.once("close", () => resolve(false));
  });
  if (!ready) return "refused";
  for (const chunk of input.chunks) {
    if (socket.destroyed) break;
    socket.write(Buffer.from(chunk, "latin1"));
    await new Promise((r) => setImmediate(r));
  }
  const until = Date.now() + INPUT_DEADLINE_MS;
  if (input.finish === "reset") socket.destroy();
  else if (input.finish === "end") socket.end();
  else {
    lastData = Date.now();
    while (!closed && Date.now() < until && Date.now() - lastData < QUIET_MS) await sleep(10);
    socket.end();
  }
  // Whatever still comes after the client's end (a server may keep a half-closed connection open).
  lastData = Date.now();
  while (!closed && Date.now() < until && Date.now() - lastData < 2 * QUIET_MS) await sleep(10);
  socket.destroy();
  return Buffer.concat(received);
}

const FIELD_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]?[^\r\n]*$/;

/**
 * Checks bytes from the router's HTTP/1 side: a sequence of well-formed responses (RFC 9112 §4–§7),
 * the last of which may be cut short (the connection closed). Null when they are.
 */
export function checkHttp1Answers(bytes: Buffer): string | null {
  const text = bytes.toString("latin1");
  let at = 0;
  while (at < text.length) {
    const headEnd = text.indexOf("\r\n\r\n", at);
    if (headEnd < 0) {
      const rest = text.slice(at, at + 13);
      return /^HTTP\/1\.[01] \d{3}/.test(rest) || "HTTP/1.1 ".startsWith(rest.slice(0, 9)) ? null : `a cut-off answer that is no response: ${JSON.stringify(text.slice(at, at + 80))}`;
    }
    const lines = text.slice(at, headEnd).split("\r\n");
    const status = /^HTTP\/1\.[01] ([1-5]\d\d) [^\r\n]*$/.exec(lines[0]);
    if (status === null) return `malformed status line ${JSON.stringify(lines[0].slice(0, 80))} at byte ${at}`;
    let length = -1;
    let chunked = false;
    for (const line of lines.slice(1)) {
      if (!FIELD_LINE.test(line)) return `malformed field line ${JSON.stringify(line.slice(0, 80))}`;
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") {
        if (!/^\d+$/.test(value)) return `malformed Content-Length ${JSON.stringify(value)}`;
        if (length >= 0 && Number(value) !== length) return "two different Content-Length values";
        length = Number(value);
      } else if (name === "transfer-encoding") {
        if (value.toLowerCase() !== "chunked") return `Transfer-Encoding ${JSON.stringify(value)}`;
        chunked = true;
      }
    }
    if (chunked && length >= 0) return "both Content-Length and Transfer-Encoding";
    at = headEnd + 4;
    const code = Number(status[1]);
    if (code === 101) return null; // a tunnel's bytes follow
    if (code < 200 || code === 204 || code === 304) continue;
    // An answer to HEAD has no body: the next response follows its head at once.
    if (text.startsWith("HTTP/1.", at) && (length > 0 || chunked)) continue;
    if (chunked) {
      for (;;) {
        const lineEnd = text.indexOf("\r\n", at);
        if (lineEnd < 0) return null;
        const size = /^([0-9a-fA-F]+)(;[^\r\n]*)?$/.exec(text.slice(at, lineEnd));
        if (size === null) return `malformed chunk size line ${JSON.stringify(text.slice(at, Math.min(lineEnd, at + 40)))}`;
        const n = parseInt(size[1], 16);
        at = lineEnd + 2;
        if (n === 0) {
          const end = text.indexOf("\r\n\r\n", at - 2);
          if (end < 0) return null;
          at = end + 4;
          break;
        }
        if (at + n + 2 > text.length) return null;
        if (text.slice(at + n, at + n + 2) !== "\r\n") return "a chunk not followed by CRLF";
        at += n + 2;
      }
    } else if (length >= 0) {
      at += length;
    } else {
      return null; // delimited by the end of the connection
    }
  }
  return null;
}

/** Checks bytes from the router's HTTP/2 side: a sequence of frames (RFC 9113 §4.1), the last maybe cut short. */
export function checkH2Frames(bytes: Buffer): string | null {
  let at = 0;
  let first = true;
  while (at + 9 <= bytes.length) {
    const length = bytes.readUIntBE(at, 3);
    const type = bytes[at + 3];
    if (first && type !== 4) return `the server's first frame is of type ${type}, not SETTINGS`;
    if (type > 9) return `the server sent a frame of unknown type ${type}`;
    first = false;
    at += 9 + length;
  }
  return null;
}

/** Sends the input's requests with node:http2's client; a malformed answer is one with no numeric :status. */
async function runH2(port: number, input: H2Input): Promise<string | null | "refused"> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: "app.fuzz.test" });
  session.on("error", () => {});
  const ready = await new Promise<boolean>((resolve) => {
    session.once("connect", () => resolve(true));
    session.once("close", () => resolve(false));
  });
  if (!ready) return "refused";
  let problem: string | null = null;
  const done: Promise<void>[] = [];
  for (const s of input.streams) {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(s.headers, { endStream: s.endAfterHeaders });
    } catch {
      continue; // the client refused to send it: nothing reached the router
    }
    stream.on("error", () => {});
    stream.on("response", (headers) => {
      const status = headers[":status"];
      if (typeof status !== "number" || status < 100 || status > 599) problem = `a response with :status ${JSON.stringify(status)}`;
    });
    stream.resume();
    done.push(new Promise((r) => stream.once("close", () => r())));
    if (!s.endAfterHeaders) {
      for (const piece of s.body) if (!stream.destroyed) stream.write(Buffer.from(piece, "latin1"));
      if (s.reset !== null) stream.close(s.reset);
      else if (!stream.destroyed) stream.end();
    }
  }
  if (input.destroySession) session.destroy();
  await Promise.race([Promise.all(done), sleep(INPUT_DEADLINE_MS)]);
  session.destroy();
  return problem;
}

/** A normal request on the input's path; true when the app's answer came back. */
export async function probe(router: FuzzRouter, path: FuzzInput["path"]): Promise<boolean> {
  if (path === "h2" || path === "h2-frames") {
    return new Promise((resolve) => {
      const session = http2.connect(`https://127.0.0.1:${router.httpsPort}`, { rejectUnauthorized: false, servername: "app.fuzz.test" });
      const timer = setTimeout(() => finish(false), INPUT_DEADLINE_MS);
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        session.destroy();
        resolve(ok);
      };
      session.on("error", () => finish(false));
      const stream = session.request({ ":path": "/", ":authority": "app.fuzz.test" });
      let status = 0;
      let body = "";
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => (body += c));
      stream.on("end", () => finish(status === 200 && body === "app"));
      stream.on("error", () => finish(false));
    });
  }
  const answer = await runRaw(path === "http1" ? router.httpPort : router.httpsPort, path === "https1", ["http/1.1"], {
    chunks: ["GET / HTTP/1.1\r\nHost: app.fuzz.test\r\nConnection: close\r\n\r\n"], finish: "wait",
  });
  return answer !== "refused" && /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\napp$/.test(answer.toString("latin1"));
}

/** Runs one input, then the probe; a finding when the router failed it. */
export async function runInput(router: FuzzRouter, item: FuzzInput): Promise<Finding | null> {
  let problem: string | null = null;
  if (item.path === "h2") {
    const result = await runH2(router.httpsPort, item.input);
    if (result === "refused") return { kind: "stopped_answering", detail: "the HTTPS port refused a connection" };
    problem = result;
  } else {
    const secure = item.path !== "http1";
    const bytes = await runRaw(secure ? router.httpsPort : router.httpPort, secure, item.path === "h2-frames" ? ["h2"] : ["http/1.1"], item.input);
    if (bytes === "refused") return { kind: "stopped_answering", detail: `the ${secure ? "HTTPS" : "HTTP"} port refused a connection` };
    if (item.input.finish !== "reset") problem = item.path === "h2-frames" ? checkH2Frames(bytes) : checkHttp1Answers(bytes);
  }
  const serving = await probe(router, item.path);
  const errors = router.takeErrors();
  if (errors.length > 0) return { kind: "crash", detail: errors.join("\n") };
  if (problem !== null) return { kind: "malformed_answer", detail: problem };
  if (!serving) return { kind: "stopped_answering", detail: "a normal request after this input got no answer from the app" };
  return null;
}

/** A corpus file: the input, and what it did when it was found. */
export interface CorpusEntry {
  found: string;
  item: FuzzInput;
}

export async function saveToCorpus(dir: string, item: FuzzInput, finding: Finding): Promise<string> {
  await mkdir(dir, { recursive: true });
  const json = JSON.stringify(item);
  const file = join(dir, `${item.path}-${createHash("sha256").update(json).digest("hex").slice(0, 12)}.json`);
  const entry: CorpusEntry = { found: `${finding.kind}: ${finding.detail.split("\n").slice(0, 3).join(" | ")}`, item };
  await writeFile(file, `${JSON.stringify(entry, null, 1)}\n`);
  return file;
}

export async function loadCorpus(dir: string): Promise<{ file: string; entry: CorpusEntry }[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(".json")).sort();
  return Promise.all(names.map(async (n) => ({ file: join(dir, n), entry: JSON.parse(await readFile(join(dir, n), "utf8")) as CorpusEntry })));
}
