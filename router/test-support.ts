/** Helpers shared by the router tests: real upstream servers and a small HTTP client. */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AppUsage, Metering } from "./metering.ts";

export interface TestUpstream {
  server: http.Server;
  address: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: () => number;
  close: () => Promise<void>;
}

/** Starts an upstream on a free port; `handler` defaults to answering its own name. */
export async function startUpstream(name: string, handler?: http.RequestListener): Promise<TestUpstream> {
  let connections = 0;
  const server = http.createServer(
    handler ??
      ((req, res) => {
        req.resume();
        req.on("end", () => {
          res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(name) });
          res.end(name);
        });
      }),
  );
  // Upgraded sockets leave the HTTP server's bookkeeping, so close() destroys every socket itself.
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket: net.Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface GetOptions {
  port: number;
  host: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  agent?: http.Agent | false;
}

/** One request to 127.0.0.1:port with the given Host header, body read to the end. */
export function send(options: GetOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: "127.0.0.1",
        port: options.port,
        path: options.path ?? "/",
        method: options.method ?? "GET",
        headers: { ...options.headers, Host: options.host },
        agent: options.agent ?? false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (c: Buffer) => chunks.push(c));
        response.on("error", reject);
        response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    request.on("error", reject);
    request.end(options.body);
  });
}

/**
 * Ports handed out to tests, one file per port. Test files run in parallel processes, and a port is
 * bound seconds after it is picked (a deck server starting), so each is reserved for every process.
 */
const RESERVED = join(tmpdir(), "deck-test-ports");
/** A reservation older than this is left over from an earlier run. */
const STALE_MS = 60 * 60_000;

function reserve(port: number): boolean {
  const file = join(RESERVED, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return true;
  } catch {
    try {
      if (Date.now() - statSync(file).mtimeMs < STALE_MS) return false;
      writeFileSync(file, String(process.pid));
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * A port nothing listens on right now (bound once, then released) and no other test was given,
 * picked below the kernel's range for the local ports of outgoing connections (32768–60999 by
 * default): a port from that range can be taken by any process's outgoing connection between this
 * check and the caller's own bind.
 */
export async function freePort(): Promise<number> {
  mkdirSync(RESERVED, { recursive: true });
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (!reserve(port)) continue;
    if (await canListen(port)) return port;
  }
  throw new Error("no free port found between 20000 and 32000");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true or the deadline passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms = 5_000, what = "condition"): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Everything `metering` counted since the last call, taken as the deck server takes it: one batch, acknowledged. */
export function takeUsage(metering: Metering): AppUsage[] {
  const batch = metering.takeBatch();
  if (batch.id !== null) metering.acknowledge(batch.id);
  return batch.usage;
}
