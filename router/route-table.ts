/**
 * The in-memory route table: Host header → app → upstreams. Pure data; no I/O.
 *
 * A table is an immutable `RouteSnapshot`; `RouteTable` holds the current one and replaces it with a
 * single reference assignment, so a request either sees the old routes or the new ones, never a mix.
 */
import { checkAppName, DeckError } from "../core/index.ts";
import type { Route, RouteSettings } from "../core/index.ts";

export interface UpstreamAddress {
  /** As given in the route: `127.0.0.1:3001` or `[::1]:3001`. */
  address: string;
  host: string;
  port: number;
}

export interface RouteEntry {
  app: string;
  hosts: readonly string[];
  upstreams: readonly UpstreamAddress[];
  settings: Readonly<RouteSettings>;
  /** Round-robin cursor; private to this snapshot, so a swap starts the rotation afresh. */
  cursor: number;
}

export type RouteValidation = { ok: true; route: Route } | { ok: false; message: string };

/**
 * Lowercases, drops a `:port` suffix and a trailing dot (`MyApp.Localhost.:8080` → `myapp.localhost`).
 * Runs on every request, so it scans characters instead of using a regex.
 */
export function normaliseHost(header: string): string {
  let end = header.length;
  if (header.charCodeAt(0) === 91 /* [ */) {
    const close = header.indexOf("]");
    if (close !== -1) end = close + 1;
  } else {
    const colon = header.indexOf(":");
    if (colon !== -1) end = colon;
  }
  if (end > 0 && header.charCodeAt(end - 1) === 46 /* . */) end--;
  const host = end === header.length ? header : header.slice(0, end);
  return host.toLowerCase();
}

/** Parses `host:port` (IPv6 in brackets); undefined when it is not a usable upstream address. */
export function parseUpstream(address: string): UpstreamAddress | undefined {
  if (typeof address !== "string") return undefined;
  const colon = address.lastIndexOf(":");
  if (colon <= 0) return undefined;
  let host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  if (host.startsWith("[")) {
    if (!host.endsWith("]") || host.length < 3) return undefined;
    host = host.slice(1, -1);
  } else if (host.includes(":") || /\s/.test(host)) {
    return undefined;
  }
  return { address, host, port };
}

/** Checks the shape of one route as received from outside (JSON), returning a normalised copy. */
export function validateRoute(value: unknown): RouteValidation {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { ok: false, message: "a route must be an object {app, hosts, upstreams}" };
  const v = value as Record<string, unknown>;
  if (typeof v.app !== "string") return { ok: false, message: "route.app must be a string" };
  const name = checkAppName(v.app);
  if (!name.ok) return { ok: false, message: name.message };
  if (!Array.isArray(v.hosts) || v.hosts.length === 0) return { ok: false, message: `route "${v.app}": hosts must be a non-empty array of host names` };
  if (!Array.isArray(v.upstreams)) return { ok: false, message: `route "${v.app}": upstreams must be an array of "host:port" strings` };
  const hosts: string[] = [];
  for (const h of v.hosts) {
    if (typeof h !== "string" || h.length === 0 || h.length > 253 || /[\s/]/.test(h)) return { ok: false, message: `route "${v.app}": host ${JSON.stringify(h)} is not a host name` };
    const host = normaliseHost(h);
    if (host.length === 0) return { ok: false, message: `route "${v.app}": host ${JSON.stringify(h)} is not a host name` };
    if (!hosts.includes(host)) hosts.push(host);
  }
  const upstreams: string[] = [];
  for (const u of v.upstreams) {
    if (typeof u !== "string" || !parseUpstream(u)) return { ok: false, message: `route "${v.app}": upstream ${JSON.stringify(u)} is not "host:port"` };
    upstreams.push(u);
  }
  const settings = validateSettings(v.app, v.settings);
  if (typeof settings === "string") return { ok: false, message: settings };
  return { ok: true, route: settings === undefined ? { app: v.app, hosts, upstreams } : { app: v.app, hosts, upstreams, settings } };
}

const BOOLEAN_SETTINGS = ["maintenance", "paused", "redirectHttps", "hsts"] as const;
const NUMBER_SETTINGS = ["rateLimitRps", "rateLimitBurst", "maxBodyBytes"] as const;
/** Settings that are left out rather than 0 when there is no limit (a zero rate would never refill). */
const POSITIVE_SETTINGS = ["bandwidthBytesPerSecond"] as const;

/** Checks `route.settings`; returns the message of the first problem, or the settings (undefined = none). */
function validateSettings(app: string, value: unknown): RouteSettings | undefined | string {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return `route "${app}": settings must be an object`;
  const v = value as Record<string, unknown>;
  const out: RouteSettings = {};
  for (const key of Object.keys(v)) {
    if ((BOOLEAN_SETTINGS as readonly string[]).includes(key)) {
      if (typeof v[key] !== "boolean") return `route "${app}": settings.${key} must be true or false`;
      (out as Record<string, unknown>)[key] = v[key];
    } else if ((NUMBER_SETTINGS as readonly string[]).includes(key)) {
      const n = v[key];
      if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return `route "${app}": settings.${key} must be a number >= 0`;
      (out as Record<string, unknown>)[key] = n;
    } else if ((POSITIVE_SETTINGS as readonly string[]).includes(key)) {
      const n = v[key];
      if (typeof n !== "number" || !Number.isFinite(n) || n <= 0) return `route "${app}": settings.${key} must be a number > 0`;
      (out as Record<string, unknown>)[key] = n;
    } else {
      return `route "${app}": unknown setting ${JSON.stringify(key)}`;
    }
  }
  return out;
}

/** An immutable table. Build it with `buildSnapshot`, which refuses a host claimed by two apps. */
export class RouteSnapshot {
  readonly byHost: ReadonlyMap<string, RouteEntry>;
  readonly byApp: ReadonlyMap<string, RouteEntry>;

  constructor(byHost: Map<string, RouteEntry>, byApp: Map<string, RouteEntry>) {
    this.byHost = byHost;
    this.byApp = byApp;
  }

  /** The routes this snapshot was built from, sorted by app for stable output. */
  routes(): Route[] {
    return [...this.byApp.values()]
      .map((e) => {
        const route: Route = { app: e.app, hosts: [...e.hosts], upstreams: e.upstreams.map((u) => u.address) };
        if (Object.keys(e.settings).length > 0) route.settings = { ...e.settings };
        return route;
      })
      .sort((a, b) => (a.app < b.app ? -1 : a.app > b.app ? 1 : 0));
  }
}

/** Builds a snapshot from validated routes; throws DeckError `route_conflict` on a shared host or app. */
export function buildSnapshot(routes: readonly Route[]): RouteSnapshot {
  const byHost = new Map<string, RouteEntry>();
  const byApp = new Map<string, RouteEntry>();
  for (const route of routes) {
    if (byApp.has(route.app)) throw new DeckError("route_conflict", `app "${route.app}" appears twice in the route table`, { app: route.app });
    const upstreams = route.upstreams.map((u) => {
      const parsed = parseUpstream(u);
      if (!parsed) throw new DeckError("invalid_route", `route "${route.app}": upstream ${JSON.stringify(u)} is not "host:port"`);
      return parsed;
    });
    const hosts = route.hosts.map(normaliseHost);
    const entry: RouteEntry = { app: route.app, hosts, upstreams, settings: Object.freeze({ ...route.settings }), cursor: 0 };
    for (const host of hosts) {
      const owner = byHost.get(host);
      if (owner && owner.app !== route.app) {
        throw new DeckError("route_conflict", `host "${host}" is already routed to app "${owner.app}"`, { host, app: owner.app });
      }
      byHost.set(host, entry);
    }
    byApp.set(route.app, entry);
  }
  return new RouteSnapshot(byHost, byApp);
}

/** The routes after setting (adding or replacing) one app's route. */
export function withRoute(routes: readonly Route[], route: Route): Route[] {
  return [...routes.filter((r) => r.app !== route.app), route];
}

/** The routes after removing one app. */
export function withoutRoute(routes: readonly Route[], app: string): Route[] {
  return routes.filter((r) => r.app !== app);
}

/** Holds the live snapshot. Every change is one reference assignment. */
export class RouteTable {
  private current: RouteSnapshot;
  private readonly listeners: (() => void)[] = [];

  constructor(routes: readonly Route[] = []) {
    this.current = buildSnapshot(routes);
  }

  get snapshot(): RouteSnapshot {
    return this.current;
  }

  routes(): Route[] {
    return this.current.routes();
  }

  /** Calls `listener` after every change of the live table (requests waiting on a paused app use it). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Makes a prebuilt snapshot live (build it first so validation failures leave the table alone). */
  swap(next: RouteSnapshot): void {
    this.current = next;
    for (const l of this.listeners) l();
  }

  set(route: Route): void {
    this.swap(buildSnapshot(withRoute(this.current.routes(), route)));
  }

  remove(app: string): boolean {
    if (!this.current.byApp.has(app)) return false;
    this.swap(buildSnapshot(withoutRoute(this.current.routes(), app)));
    return true;
  }

  replaceAll(routes: readonly Route[]): void {
    this.swap(buildSnapshot(routes));
  }

  /** Finds the route for a raw Host header value. */
  lookup(hostHeader: string | undefined): RouteEntry | undefined {
    if (hostHeader === undefined || hostHeader.length === 0) return undefined;
    const byHost = this.current.byHost;
    // Most clients already send a lowercase host without a port; skip normalising then.
    return byHost.get(hostHeader) ?? byHost.get(normaliseHost(hostHeader));
  }

  /** Upstreams in rotation: each call returns the next one; undefined when the app has none. */
  static pick(entry: RouteEntry): UpstreamAddress | undefined {
    const n = entry.upstreams.length;
    if (n === 0) return undefined;
    if (n === 1) return entry.upstreams[0];
    const i = entry.cursor;
    entry.cursor = i + 1 >= n ? 0 : i + 1;
    return entry.upstreams[i];
  }
}
