/** The deck server's side of the router control API (see control-server.ts), over the unix socket. */
import http from "node:http";
import { DeckError } from "../core/index.ts";
import { toRouterErrorCode } from "./errors.ts";
import type { Route, RouterControl, RouterView } from "../core/index.ts";

export interface RouterHealth {
  ok: true;
  /** The router's pid (its supervisor's): the one `deck down` signals. */
  pid: number;
  /** The worker that answered (absent from routers started by an older deck). */
  worker?: number;
  routes?: number;
}

export interface RouterControlClient extends RouterControl {
  routes(): Promise<Route[]>;
  /** One app's route, or null when the router has none. */
  route(app: string): Promise<Route | null>;
  health(): Promise<RouterHealth>;
  view(app: string): Promise<RouterView>;
}

export interface RouterControlOptions {
  /** Per call; a router that does not answer within it counts as unavailable (default 10 s). */
  timeoutMs?: number;
  /**
   * How long a call keeps trying while nothing listens on the socket (default 3 s): the router's
   * supervisor has a new worker answering within a second of the last one dying. Every call is
   * idempotent, so one cut off before its answer is sent again.
   */
  retryMs?: number;
}

/** Failures where the router never answered: nothing listens, or the worker died mid-call. */
const NOT_LISTENING = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE"]);
const RETRY_INTERVAL_MS = 100;

/** How long PUT /certs may take (the whole list, saved to a file before the answer). */
const CERTS_TIMEOUT_MS = 120_000;

interface Reply {
  status: number;
  body: unknown;
}

function unavailable(socketPath: string, cause: unknown): DeckError {
  const reason = (cause as NodeJS.ErrnoException)?.code ?? (cause as Error)?.message ?? String(cause);
  return new DeckError("router_unavailable", `the router is not answering on its control socket (${reason})`, { socketPath, reason }, { cause });
}

function notListening(e: unknown): boolean {
  return e instanceof DeckError && e.code === "router_unavailable" && NOT_LISTENING.has(String((e.data as { reason?: unknown } | undefined)?.reason));
}

function call(socketPath: string, method: string, path: string, payload: unknown, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = payload === undefined ? undefined : JSON.stringify(payload);
    const headers: Record<string, string | number> = { Host: "router" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = Buffer.byteLength(body);
    }
    const request = http.request({ socketPath, method, path, headers, agent: false, timeout: timeoutMs }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (c: Buffer) => chunks.push(c));
      response.on("error", (e) => reject(unavailable(socketPath, e)));
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = text === "" ? undefined : JSON.parse(text);
        } catch {
          return reject(new DeckError("router_error", `router answered ${method} ${path} with non-JSON (${response.statusCode})`));
        }
        resolve({ status: response.statusCode ?? 0, body: parsed });
      });
    });
    request.on("timeout", () => request.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })));
    request.on("error", (e) => reject(unavailable(socketPath, e)));
    request.end(body);
  });
}

function expectOk(method: string, path: string, reply: Reply): unknown {
  if (reply.status >= 200 && reply.status < 300) return reply.body;
  const error = (reply.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof error?.code === "string" ? toRouterErrorCode(error.code) : "router_error";
  const message = typeof error?.message === "string" ? error.message : `router answered ${method} ${path} with status ${reply.status}`;
  throw new DeckError(code, message, { status: reply.status });
}

export function createRouterControl(socketPath: string, options: RouterControlOptions = {}): RouterControlClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retryMs = options.retryMs ?? 3_000;
  const answer = async (method: string, path: string, payload: unknown, callTimeoutMs: number, retryFor = retryMs): Promise<Reply> => {
    const until = Date.now() + retryFor;
    for (;;) {
      try {
        return await call(socketPath, method, path, payload, callTimeoutMs);
      } catch (e) {
        if (!notListening(e) || Date.now() + RETRY_INTERVAL_MS > until) throw e;
        await new Promise((r) => setTimeout(r, RETRY_INTERVAL_MS));
      }
    }
  };
  const request = async (method: string, path: string, payload?: unknown, callTimeoutMs = timeoutMs): Promise<unknown> =>
    expectOk(method, path, await answer(method, path, payload, callTimeoutMs));
  const route = async (app: string, retryFor = retryMs): Promise<Route | null> => {
    const path = `/routes/${encodeURIComponent(app)}`;
    const reply = await answer("GET", path, undefined, timeoutMs, retryFor);
    return reply.status === 404 ? null : (expectOk("GET", path, reply) as Route);
  };
  return {
    async setRoute(route) {
      await request("PUT", `/routes/${encodeURIComponent(route.app)}`, route);
    },
    async removeRoute(app) {
      await request("DELETE", `/routes/${encodeURIComponent(app)}`);
    },
    async replaceAll(routes) {
      await request("PUT", "/routes", routes);
    },
    async inflight(upstream) {
      const body = (await request("GET", `/inflight?upstream=${encodeURIComponent(upstream)}`)) as { inflight?: unknown };
      if (typeof body?.inflight !== "number") throw new DeckError("router_error", "router answered /inflight without a count");
      return body.inflight;
    },
    async setCertificates(certs) {
      // Tens of thousands of certificates are a few hundred MB for the router to read and save.
      await request("PUT", "/certs", certs, Math.max(timeoutMs, CERTS_TIMEOUT_MS));
    },
    async setAcmeChallenge(token, keyAuthorization) {
      await request("PUT", `/acme-challenge/${encodeURIComponent(token)}`, keyAuthorization);
    },
    async removeAcmeChallenge(token) {
      await request("DELETE", `/acme-challenge/${encodeURIComponent(token)}`);
    },
    async routes() {
      return (await request("GET", "/routes")) as Route[];
    },
    route: (app) => route(app),
    async health() {
      return (await request("GET", "/health")) as RouterHealth;
    },
    // A report says what is true now: a router not answering is not waited for.
    async view(app) {
      try {
        return { answering: true, route: await route(app, 0) };
      } catch (e) {
        if (e instanceof DeckError && e.code === "router_unavailable") return { answering: false, reason: String((e.data as { reason?: unknown }).reason) };
        throw e;
      }
    },
  };
}

/** The router's health when one answers on the socket within the timeout; undefined otherwise. */
export async function probeRouter(socketPath: string, timeoutMs = 1_000): Promise<RouterHealth | undefined> {
  try {
    const health = await createRouterControl(socketPath, { timeoutMs, retryMs: 0 }).health();
    return health?.ok === true && typeof health.pid === "number" ? health : undefined;
  } catch {
    return undefined;
  }
}
