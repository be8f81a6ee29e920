/**
 * A small stand-in for deck's API in the dashboard's tests: fixed JSON shaped like deck's answers on
 * a real HTTP port, a bearer token check, and an event stream the test can write to.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { AppSummary, Deployment, Health, Me, MetricPoint } from "./api-client.ts";

export interface FakeApiData {
  token: string;
  apps: AppSummary[];
  /** requests/s, p95 and memory per app, one value per step (oldest first). */
  metrics: Record<string, { requestsPerSecond: number[]; p95Ms: number; rssBytes: number; release: number }>;
  deployments: Record<string, Deployment>;
  /** null: this deck has no platform health route (404); "forbidden": the token is not a platform admin's (403). */
  health: Health | null | "forbidden";
  /** `GET /users/me` (a platform admin by default). */
  me?: Me;
  /**
   * More routes, keyed "METHOD /path" (the path after /api/v1, without the query; `:name` matches one
   * segment). A handler answers with [status, JSON body], or a string body sent as text/plain.
   */
  routes?: Record<string, (req: FakeRequest) => [number, unknown] | Promise<[number, unknown]>>;
}

export interface FakeRequest { params: Record<string, string>; query: URLSearchParams; body: unknown; headers: http.IncomingHttpHeaders }

export interface FakeApi {
  url: string;
  /** "PATH?QUERY" of every GET, and "METHOD PATH?QUERY" of every other request, in order. */
  requests: string[];
  /** Sends one event to every open event stream. */
  emit(type: string, data: Record<string, unknown>): void;
  close(): Promise<void>;
}

const STEP = 60;

export function metricPoints(values: number[], extra: Partial<MetricPoint>, until = Date.parse("2026-12-07T12:00:00Z")): MetricPoint[] {
  return values.map((v, i) => ({
    at: new Date(until - (values.length - 1 - i) * STEP * 1000).toISOString(), seconds: STEP, release: null, requestsPerSecond: v, errorRate: 0,
    p50Ms: null, p95Ms: null, p99Ms: null, cpu: null, rssBytes: null, memoryLimitBytes: null, memoryUse: null, restarts: 0, connections: null,
    bytesInPerSecond: 0, bytesOutPerSecond: 0, ...extra,
  }));
}

export async function startFakeApi(data: FakeApiData): Promise<FakeApi> {
  const streams = new Set<http.ServerResponse>();
  const requests: string[] = [];
  const send = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const fail = (res: http.ServerResponse, status: number, code: string, message: string) => send(res, status, { error: { code, message, requestId: "r1" } });
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const method = req.method ?? "GET";
    requests.push((method === "GET" ? "" : `${method} `) + url.pathname + url.search);
    let raw = "";
    for await (const chunk of req) raw += String(chunk);
    if (req.headers.authorization !== `Bearer ${data.token}`) return fail(res, 401, "unauthenticated", "send `Authorization: Bearer <token>`");
    const path = url.pathname.replace(/^\/api\/v1/, "");
    for (const [key, handler] of Object.entries(data.routes ?? {})) {
      const [m, pattern] = key.split(" ") as [string, string];
      const params = m === method ? matchPath(pattern, path) : null;
      if (!params) continue;
      const [status, body] = await handler({ params, query: url.searchParams, body: raw ? JSON.parse(raw) : undefined, headers: req.headers });
      if (typeof body === "string") {
        res.writeHead(status, { "content-type": "text/plain" });
        return void res.end(body);
      }
      if (status === 204) {
        res.writeHead(204);
        return void res.end();
      }
      return send(res, status, body);
    }
    if (path === "/users/me" && method === "GET") return send(res, 200, data.me ?? { id: 1, email: "admin@example.com", name: "Admin", isAdmin: true, scopes: ["admin"], organizations: [{ slug: "default", role: "owner" }] });
    if (path === "/apps") return send(res, 200, { items: data.apps, next: null });
    if (path === "/health/platform") {
      if (data.health === "forbidden") return fail(res, 403, "forbidden", "permission denied: only platform admins see the platform's health");
      return data.health ? send(res, 200, data.health) : fail(res, 404, "not_found", "no route for GET /api/v1/health/platform");
    }
    if (path === "/events") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": deck events\n\n");
      streams.add(res);
      res.on("close", () => streams.delete(res));
      return;
    }
    const m = /^\/apps\/([^/]+)\/(metrics|deployments)$/.exec(path);
    const app = m && data.apps.find((a) => a.name === decodeURIComponent(m[1]!));
    if (!m || !app) return fail(res, 404, "app_not_found", `app ${m?.[1] ?? "?"} not found`);
    if (m[2] === "deployments") return send(res, 200, { items: data.deployments[app.name] ? [data.deployments[app.name]] : [], next: null });
    const s = data.metrics[app.name];
    const points = s ? metricPoints(s.requestsPerSecond, { p95Ms: s.p95Ms, rssBytes: s.rssBytes, release: s.release }) : [];
    return send(res, 200, { app: app.name, since: url.searchParams.get("since") ?? "1h", until: "2026-12-07T12:00:00Z", step: STEP, resolution: 10, points, processes: {} });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    emit: (type, body) => {
      for (const s of streams) s.write(`event: ${type}\ndata: ${JSON.stringify(body)}\n\n`);
    },
    close: () => new Promise((resolve) => {
      for (const s of streams) s.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function matchPath(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/");
  const got = path.split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (const [i, w] of want.entries()) {
    if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(got[i]!);
    else if (w !== got[i]) return null;
  }
  return params;
}

/** Waits until the latest frame passes `test` (frames arrive as data loads); fails with the last frame seen. */
export async function waitForFrame(lastFrame: () => string | undefined, test: (frame: string) => boolean, timeoutMs = 5000): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const frame = lastFrame() ?? "";
    if (test(frame)) return frame;
    if (Date.now() > until) throw new Error(`no frame matched in ${timeoutMs} ms; the last was:\n${frame}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
