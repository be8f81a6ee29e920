/**
 * The router's control API, served on a unix socket to the deck server (never on a TCP port).
 *
 *   GET    /health                          {"ok":true,"pid":N,"worker":W,"routes":R}: N is the router's
 *                                            pid to signal (its supervisor), W the process answering
 *   GET    /routes                          Route[]
 *   PUT    /routes          body Route[]    replace the whole table
 *   PUT    /routes/:app     body Route      set one app's route
 *   DELETE /routes/:app                     remove one app's route
 *   GET    /inflight?upstream=HOST:PORT     {"inflight":N}  (requests + WebSocket tunnels)
 *   PUT    /certs           body [{hosts, cert, key}]   replace every HTTPS certificate (saved 0600); answers
 *                                            {ok, skipped: [reason]} for entries left out (up to 256 MiB)
 *   PUT    /acme-challenge/:token  body "KEY-AUTHORIZATION"   answer an ACME HTTP-01 challenge
 *   DELETE /acme-challenge/:token
 *   GET    /metrics                         per-app counters in the Prometheus text format
 *   GET    /metering/counters               {instance, buckets, apps: {APP: counts}, inflight: {HOST:PORT: N}}: the
 *                                            same counters as JSON, for deck's samples
 *   POST   /metering/batch                  {id, usage: [{app, hour, requests, bytesIn, bytesOut}]} to save: the
 *                                            batch handed out before until it is acknowledged, else a new one
 *   POST   /metering/ack?id=ID              {acknowledged} the batch is saved: not handed out again
 *
 * A change is saved to the routes file first, then made live, then answered: when the caller
 * sees 200 the router already serves the new table, and a restart would serve it too.
 * Errors answer `{"error":{"code","message"}}` with a one-line message.
 */
import http from "node:http";
import { DeckError, isDeckError, readCapped } from "../core/index.ts";
import type { Route } from "../core/index.ts";
import { buildSnapshot, validateRoute, withoutRoute, withRoute, type RouteTable } from "./route-table.ts";
import type { Metering } from "./metering.ts";
import { saveRoutesFile } from "./routes-file.ts";
import { AcmeChallenges } from "./acme-challenges.ts";
import { saveCertsFile } from "./certs-file.ts";
import { validateCertificates, type CertStore } from "./tls-server.ts";

export interface ControlServerOptions {
  table: RouteTable;
  /** Per-app counters: GET /metrics (Prometheus text), and bandwidth to save (POST /metering/batch, /metering/ack). */
  metering?: Metering;
  /** Where the in-flight counts come from (the proxy). */
  inflight: (upstream: string) => number;
  /** Every upstream's in-flight count (for GET /metering/counters). */
  inflightByUpstream?: () => Record<string, number>;
  routesFile: string;
  /** HTTPS certificates (PUT /certs) and the file they are saved to; absent = no HTTPS endpoints. */
  certs?: { store: CertStore; file: string; /** Largest PUT /certs body (default MAX_CERTS_BODY_BYTES). */ maxBodyBytes?: number };
  /** ACME HTTP-01 answers the proxy serves (PUT/DELETE /acme-challenge/:token). */
  challenges?: AcmeChallenges;
  log?: (line: string) => void;
  /** The pid /health names as the router's: its supervisor's when a worker serves (default: this process). */
  routerPid?: number;
}

const MAX_BODY_BYTES = 8 * 1024 * 1024;
/**
 * PUT /certs carries every certificate with its chain and key: about 2.3 KB for a Let's Encrypt ECDSA
 * one, 5 KB for an RSA one, so this holds some 50,000 to 100,000 of them.
 */
export const MAX_CERTS_BODY_BYTES = 256 * 1024 * 1024;

const mib = (bytes: number) => `${Math.ceil(bytes / (1024 * 1024))} MiB`;

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

/** Reads the body up to `limit` bytes; a longer one is read to its end and refused (413), not reset. */
async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const { text, size, over, ended } = await readCapped(req, limit);
  if (!ended) throw new DeckError("invalid_request", "the request body did not arrive whole");
  if (over) throw new DeckError("body_too_large", `request body is ${mib(size)}, more than the ${mib(limit)} the router takes`, { size, limit });
  return text;
}

async function readJson(req: http.IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const text = await readBody(req, limit);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DeckError("invalid_json", `request body is not valid JSON: ${(e as Error).message}`);
  }
}

function checkRoute(value: unknown): Route {
  const checked = validateRoute(value);
  if (!checked.ok) throw new DeckError("invalid_route", checked.message);
  return checked.route;
}

export function createControlServer(options: ControlServerOptions): http.Server {
  const { table, routesFile } = options;
  const log = options.log ?? (() => {});
  // Changes run one at a time so two concurrent PUTs cannot both start from the same old table.
  let queue: Promise<unknown> = Promise.resolve();
  const serialise = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => {});
    return run;
  };

  /** Validates, saves and swaps in `next` routes computed from the live ones. */
  const change = (describe: string, compute: (current: Route[]) => Route[]) =>
    serialise(async () => {
      const routes = compute(table.routes());
      const snapshot = buildSnapshot(routes);
      await saveRoutesFile(routesFile, snapshot.routes());
      table.swap(snapshot);
      log(`routes: ${describe}`);
    });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://router");
    const path = url.pathname;
    const method = req.method ?? "GET";

    if (path === "/health") {
      if (method !== "GET") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      return sendJson(res, 200, { ok: true, pid: options.routerPid ?? process.pid, worker: process.pid, routes: table.snapshot.byApp.size });
    }
    if (path === "/inflight") {
      if (method !== "GET") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      const upstream = url.searchParams.get("upstream");
      if (!upstream) return sendError(res, 400, "invalid_request", "missing ?upstream=HOST:PORT");
      return sendJson(res, 200, { inflight: options.inflight(upstream) });
    }
    if (path === "/metrics" && options.metering) {
      if (method !== "GET") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      const text = await options.metering.metrics();
      res.writeHead(200, { "Content-Type": options.metering.registry.contentType, "Content-Length": Buffer.byteLength(text) });
      return void res.end(text);
    }
    if (path === "/metering/counters" && options.metering) {
      if (method !== "GET") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      return sendJson(res, 200, { ...options.metering.counters(), inflight: options.inflightByUpstream?.() ?? {} });
    }
    if (path === "/metering/batch" && options.metering) {
      if (method !== "POST") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      return sendJson(res, 200, options.metering.takeBatch());
    }
    if (path === "/metering/ack" && options.metering) {
      if (method !== "POST") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      const id = url.searchParams.get("id");
      if (!id) return sendError(res, 400, "invalid_request", "missing ?id=BATCH");
      return sendJson(res, 200, { acknowledged: options.metering.acknowledge(id) });
    }
    if (path === "/certs" && options.certs) {
      if (method !== "PUT") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      const body = await readJson(req, options.certs.maxBodyBytes ?? MAX_CERTS_BODY_BYTES).catch((e: unknown) => {
        if (!isDeckError(e) || e.code !== "body_too_large") throw e;
        const { size, limit } = e.data as { size: number; limit: number };
        throw new DeckError("certificates_too_large", `the router takes at most ${mib(limit)} of certificates and their keys at once, and deck holds ${mib(size)}; remove certificates no longer needed (certs:remove, domains:remove)`, { size, limit });
      });
      const checked = validateCertificates(body);
      if (!checked.ok) throw new DeckError("invalid_certificate", checked.message);
      const { store, file } = options.certs;
      const skipped = await serialise(async () => {
        // A bad entry is left out (and logged), never the whole list: one tenant's name cannot stop
        // every other app's certificates from being served.
        const previous = store.certificates();
        const left = [...checked.skipped, ...store.replace(checked.certs)];
        try {
          await saveCertsFile(file, store.certificates());
        } catch (e) {
          store.replace(previous);
          throw e;
        }
        for (const reason of left) log(`certs: left out ${reason}`);
        log(`certs: serving ${store.certificates().length} certificate(s)`);
        return left;
      });
      return sendJson(res, 200, { ok: true, skipped });
    }
    if (path.startsWith("/acme-challenge/") && options.challenges) {
      const token = decodeURIComponent(path.slice("/acme-challenge/".length));
      if (!AcmeChallenges.isToken(token)) return sendError(res, 400, "invalid_request", "an ACME token is base64url text");
      if (method === "PUT") {
        const keyAuthorization = await readJson(req);
        if (typeof keyAuthorization !== "string" || !/^[A-Za-z0-9_.-]{1,600}$/.test(keyAuthorization)) {
          throw new DeckError("invalid_request", "PUT /acme-challenge/:token expects the key authorization as a JSON string");
        }
        options.challenges.set(token, keyAuthorization);
        return sendJson(res, 200, { ok: true });
      }
      if (method === "DELETE") return sendJson(res, 200, { ok: true, removed: options.challenges.delete(token) });
      return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
    }
    if (path === "/routes") {
      if (method === "GET") return sendJson(res, 200, table.routes());
      if (method !== "PUT") return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
      const body = await readJson(req);
      if (!Array.isArray(body)) throw new DeckError("invalid_route", "PUT /routes expects a JSON array of routes");
      const routes = body.map(checkRoute);
      await change(`replaced all (${routes.length} apps)`, () => routes);
      return sendJson(res, 200, { ok: true });
    }
    if (path.startsWith("/routes/")) {
      const app = decodeURIComponent(path.slice("/routes/".length));
      if (app === "" || app.includes("/")) return sendError(res, 404, "not_found", `no such endpoint ${path}`);
      if (method === "GET") {
        const route = table.routes().find((r) => r.app === app);
        return route ? sendJson(res, 200, route) : sendError(res, 404, "not_found", `no route for app "${app}"`);
      }
      if (method === "PUT") {
        const route = checkRoute(await readJson(req));
        if (route.app !== app) throw new DeckError("invalid_route", `route.app "${route.app}" does not match the path /routes/${app}`);
        await change(`${app} → [${route.upstreams.join(", ")}] hosts [${route.hosts.join(", ")}]`, (current) => withRoute(current, route));
        return sendJson(res, 200, { ok: true });
      }
      if (method === "DELETE") {
        let removed = false;
        await change(`${app} removed`, (current) => {
          const next = withoutRoute(current, app);
          removed = next.length !== current.length;
          return next;
        });
        return sendJson(res, 200, { ok: true, removed });
      }
      return sendError(res, 405, "method_not_allowed", `${method} ${path} is not supported`);
    }
    return sendError(res, 404, "not_found", `no such endpoint ${method} ${path}`);
  };

  return http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (isDeckError(e)) {
        const status = e.code === "route_conflict" ? 409 : e.code === "body_too_large" || e.code === "certificates_too_large" ? 413 : 400;
        return sendError(res, status, e.code, e.message);
      }
      log(`control: ${req.method} ${req.url} failed: ${(e as Error).stack ?? String(e)}`);
      sendError(res, 500, "internal", `router could not apply the change: ${(e as Error).message.split("\n")[0]}`);
    });
  });
}
