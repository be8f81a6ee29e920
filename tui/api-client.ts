/**
 * The dashboard's only way to deck: its REST API (`/api/v1`) with a bearer token. Every failure
 * becomes an `ApiError` with a one-line message a person can act on.
 */
import { parseEventStream, type ServerEvent } from "./event-stream-parser.ts";

export type { ServerEvent };

export interface ApiClientOptions {
  url: string;
  token: string;
  fetch?: typeof fetch;
  /**
   * A platform admin looking as another user (the Support screen's "view as"): every request carries
   * `X-Deck-View-As: EMAIL`, which deck honours for platform admins on reads only.
   */
  viewAs?: string;
}

/** `GET /users/me`: who the token belongs to, their organisations and roles, the token's scopes. */
export interface Me { id: number; email: string; name: string | null; isAdmin: boolean; scopes: string[]; organizations: { slug: string; role: string }[] }

export interface AppSummary { name: string; status: string; framework: string | null; createdAt: string }

export interface MetricPoint {
  at: string; seconds: number; release: number | null; requestsPerSecond: number; errorRate: number | null;
  p50Ms: number | null; p95Ms: number | null; p99Ms: number | null; cpu: number | null; rssBytes: number | null;
  memoryLimitBytes: number | null; memoryUse: number | null; restarts: number; connections: number | null;
  bytesInPerSecond: number; bytesOutPerSecond: number;
}

export interface AppMetrics { app: string; since: string; until: string; step: number; points: MetricPoint[] }

export interface Deployment {
  id: number; kind: string; status: string; commit: string | null; release: string | null;
  error: string | null; createdAt: string; finishedAt: string | null;
}

/** One of deck's services; `up` is absent for a service reported only through its nodes (the builders). */
export interface ServiceHealth { name: string; up?: boolean; [detail: string]: unknown }

/** `GET /api/v1/health/platform`: platform admins only. */
export interface Health {
  host: { cpus: number; load1: number; memTotal: number; memFree: number; diskTotal: number | null; diskFree: number | null };
  services: ServiceHealth[];
  buildQueue: { waiting: number; running: number };
  alertsFiring: number;
  /** Every app's traffic through the router per 10 seconds, oldest first (absent from an older deck). */
  traffic?: { at: string; requestsPerSecond: number; p95Ms: number | null }[];
}

/** One event from `GET /api/v1/events`: its kind and its JSON data (which names the app). */
export interface DeckEvent { type: string; app: string; data: Record<string, unknown> }

export type ApiErrorCode = "unauthorized" | "forbidden" | "not_found" | "unreachable" | "failed";

export class ApiError extends Error {
  constructor(readonly code: ApiErrorCode, message: string, readonly status: number | null = null) {
    super(message);
    this.name = "ApiError";
  }
}

export const TOKEN_REFUSED = "the token was refused: sign in again (deck tui --token …)";

export interface ApiClient {
  url: string;
  /** Whose eyes the dashboard looks through when a platform admin views as another user; absent otherwise. */
  viewAs?: string;
  /** Any API call: the JSON answer (undefined for 204), or an ApiError with one line to show. */
  request<T = unknown>(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, body?: unknown): Promise<T>;
  /** Streams a text body (logs, a build's output) line by line until it ends or `signal` aborts. */
  streamLines(path: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void>;
  /** Follows a server-sent-events answer (`?follow=true` of logs and builds) until it ends or `signal` aborts. */
  followEvents(path: string, onEvent: (e: ServerEvent) => void, signal: AbortSignal): Promise<void>;
  /** A client for the same deck looking as `email` (reads only); `undefined` returns to the caller's own view. */
  as(email: string | undefined): ApiClient;
  me(): Promise<Me>;
  apps(): Promise<AppSummary[]>;
  appMetrics(app: string, since: string): Promise<AppMetrics>;
  lastDeployment(app: string): Promise<Deployment | null>;
  /** Host and service health for platform admins; null when this deck does not serve it (404, or an older answer without the host). */
  health(): Promise<Health | null>;
  /** Follows the event stream until `signal` aborts, reconnecting with backoff; `onProblem` hears why a connection ended. */
  events(onEvent: (e: DeckEvent) => void, signal: AbortSignal, onProblem?: (e: ApiError) => void): Promise<void>;
}

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;

export function createApiClient(options: ApiClientOptions): ApiClient {
  const base = options.url.replace(/\/+$/, "") + "/api/v1";
  const doFetch = options.fetch ?? fetch;
  const headers: Record<string, string> = { authorization: `Bearer ${options.token}`, accept: "application/json", ...(options.viewAs ? { "x-deck-view-as": options.viewAs } : {}) };

  async function send(path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await doFetch(base + path, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) } });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new ApiError("unreachable", `cannot reach deck at ${options.url}: ${describeCause(err)}`);
    }
    if (!res.ok) throw await toApiError(res, path);
    return res;
  }

  async function getJson<T>(path: string): Promise<T> {
    return (await (await send(path)).json()) as T;
  }

  return {
    url: options.url,
    ...(options.viewAs ? { viewAs: options.viewAs } : {}),
    request: async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const res = await send(path, body === undefined ? { method } : { method, body: JSON.stringify(body), headers: { "content-type": "application/json" } });
      if (res.status === 204) return undefined as T;
      const text = await res.text();
      return (text ? JSON.parse(text) : undefined) as T;
    },
    streamLines: async (path, onLine, signal) => {
      const res = await send(path, { signal, headers: { accept: "text/plain" } });
      if (!res.body) return;
      const decoder = new TextDecoder();
      const reader = res.body.getReader();
      const stop = () => void reader.cancel().catch(() => undefined); // cancelling a closed stream has nothing to report
      signal.addEventListener("abort", stop, { once: true });
      let rest = "";
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          rest += decoder.decode(value, { stream: true });
          const lines = rest.split("\n");
          rest = lines.pop()!;
          for (const l of lines) onLine(l);
        }
        if (rest) onLine(rest);
      } catch (err) {
        if (!signal.aborted) throw new ApiError("failed", `the stream broke: ${describeCause(err)}`);
      } finally {
        signal.removeEventListener("abort", stop);
      }
    },
    followEvents: async (path, onEvent, signal) => {
      const res = await send(path, { signal, headers: { accept: "text/event-stream" } });
      try {
        await readEvents(res, onEvent, signal);
      } catch (err) {
        if (!signal.aborted) throw new ApiError("failed", `the stream broke: ${describeCause(err)}`);
      }
    },
    as: (email) => createApiClient({ ...options, viewAs: email }),
    me: () => getJson<Me>("/users/me"),
    apps: async () => (await getJson<{ items: AppSummary[] }>("/apps?limit=100")).items,
    appMetrics: (app, since) => getJson<AppMetrics>(`/apps/${encodeURIComponent(app)}/metrics?since=${encodeURIComponent(since)}`),
    lastDeployment: async (app) => (await getJson<{ items: Deployment[] }>(`/apps/${encodeURIComponent(app)}/deployments?limit=1`)).items[0] ?? null,
    health: async () => {
      try {
        const health = await getJson<Partial<Health>>("/health/platform");
        return health.host && Array.isArray(health.services) && health.buildQueue ? (health as Health) : null;
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return null;
        throw err;
      }
    },
    events: async (onEvent, signal, onProblem) => {
      let wait = FIRST_RETRY_MS;
      while (!signal.aborted) {
        try {
          const res = await send("/events", { signal, headers: { accept: "text/event-stream" } });
          wait = FIRST_RETRY_MS;
          await readEvents(res, (e) => onEvent(toDeckEvent(e)), signal);
          if (!signal.aborted) onProblem?.(new ApiError("unreachable", "the event stream ended; reconnecting"));
        } catch (err) {
          if (signal.aborted) return;
          onProblem?.(err instanceof ApiError ? err : new ApiError("failed", `the event stream broke: ${describeCause(err)}`));
        }
        await sleep(wait, signal);
        wait = Math.min(LAST_RETRY_MS, wait * 2);
      }
    },
  };
}

async function readEvents(res: Response, onEvent: (e: ServerEvent) => void, signal: AbortSignal): Promise<void> {
  if (!res.body) return;
  const push = parseEventStream(onEvent);
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  const stop = () => void reader.cancel().catch(() => undefined); // cancelling a closed stream has nothing to report
  signal.addEventListener("abort", stop, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      push(decoder.decode(value, { stream: true }));
    }
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

function toDeckEvent(e: ServerEvent): DeckEvent {
  let data: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(e.data) as unknown;
    if (parsed && typeof parsed === "object") data = parsed as Record<string, unknown>;
  } catch {
    data = { text: e.data };
  }
  return { type: e.event, app: typeof data.app === "string" ? data.app : "", data };
}

async function toApiError(res: Response, path: string): Promise<ApiError> {
  if (res.status === 401) return new ApiError("unauthorized", TOKEN_REFUSED, 401);
  let message = "";
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    message = body.error?.message ?? "";
  } catch {
    // A body that is not deck's JSON error (a proxy's page): the status says enough.
  }
  const line = (message || `${res.status} ${res.statusText}`).split("\n")[0]!;
  if (res.status === 403) return new ApiError("forbidden", `not allowed: ${line}`, 403);
  if (res.status === 404) return new ApiError("not_found", `${path.split("?")[0]}: ${line}`, 404);
  return new ApiError("failed", `deck answered ${res.status}: ${line}`, res.status);
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
