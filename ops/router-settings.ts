import { burstForRate, DeckError, isRateLimitRps, RATE_LIMIT_ALLOWED, RATE_LIMIT_RPS_MAX } from "../core/index.ts";
import { parseByteSize } from "../config/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { setAppRouterSettings, type AppRouterSettings, type AppRow } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";
import { applyOrUndo, reloadApp } from "./route-change.ts";

/**
 * What the router does for one app: maintenance mode and the per-app limits and HTTPS options
 * (router:set); ps:stop / ps:start are in processes.ts. Settings resolve app → server default
 * (DECK_RATE_LIMIT, DECK_RATE_BURST, DECK_MAX_BODY_SIZE); every change is saved first, then sent to the
 * router, then audited.
 */

// ---------- maintenance mode ----------
export interface MaintenanceState { app: string; maintenance: boolean; stopped: boolean }

const maintenanceState = (app: AppRow): MaintenanceState => ({ app: app.name, maintenance: app.router.maintenance, stopped: app.stopped });

/** Turns maintenance mode on or off: while on, every request to the app gets the maintenance page (503). */
export async function setMaintenance(deps: DeployDeps, caller: Caller, name: string, enabled: boolean): Promise<MaintenanceState> {
  const app = await authorizeApp(deps.db, caller, "router:set", name);
  await setAppRouterSettings(deps.db, app.id, { maintenance: enabled });
  const fresh = await reloadApp(deps, app);
  await applyOrUndo(deps, fresh, () => setAppRouterSettings(deps.db, app.id, { maintenance: app.router.maintenance }), "maintenance mode unchanged");
  await recordAction(deps, caller, enabled ? "maintenance:on" : "maintenance:off", app.name);
  return maintenanceState(fresh);
}

export async function maintenanceReport(deps: DeployDeps, caller: Caller, name: string): Promise<MaintenanceState> {
  return maintenanceState(await authorizeApp(deps.db, caller, "app:read", name));
}

// ---------- router:set / router:report ----------
/** The settings router:set changes, by their SSH key; the API uses the camelCase field names. */
export const ROUTER_KEYS = {
  "rate-limit": "rateLimitRps",
  "rate-burst": "rateLimitBurst",
  "max-body-size": "maxBodyBytes",
  "redirect-https": "redirectHttps",
  hsts: "hsts",
} as const;
export type RouterKey = keyof typeof ROUTER_KEYS;
export type RouterField = (typeof ROUTER_KEYS)[RouterKey];
const KEY_NAMES = Object.keys(ROUTER_KEYS) as RouterKey[];

/**
 * Upper bounds of the numeric settings (far above any sensible value; they keep the columns in range).
 * A rate-limit is also checked against its lower bound, by isRateLimitRps, from SSH and the API alike.
 */
export const ROUTER_LIMITS = { rateLimitRps: RATE_LIMIT_RPS_MAX, rateLimitBurst: 1_000_000, maxBodyBytes: 1024 ** 4 } as const;

/** A change: a value, or null for the server default; fields left out stay as they are. */
export interface RouterSettingsChange {
  rateLimitRps?: number | null;
  rateLimitBurst?: number | null;
  maxBodyBytes?: number | null;
  redirectHttps?: boolean | null;
  hsts?: boolean | null;
}

const ALLOWED: Record<RouterKey, string> = {
  "rate-limit": RATE_LIMIT_ALLOWED,
  "rate-burst": `a whole number of requests from 1 to ${ROUTER_LIMITS.rateLimitBurst}`,
  "max-body-size": "a size like 10m, 512k or 1g (0 = no limit)",
  "redirect-https": "true or false",
  hsts: "true or false",
};

function badValue(key: RouterKey, raw: string): DeckError {
  return new DeckError("bad_argument", `"${raw.slice(0, 30)}" is not a valid ${key}: give ${ALLOWED[key]}`);
}

/** A request body size: bytes, or a size like 10m; 0 means no limit. Null when it is neither. */
export function parseBodySize(raw: string): number | null {
  if (/^\s*0+(\.0*)?\s*[kmgt]?(i?b)?\s*$/i.test(raw)) return 0;
  const bytes = parseByteSize(raw);
  return bytes !== null && bytes >= 1 && bytes <= ROUTER_LIMITS.maxBodyBytes ? bytes : null;
}

export function isRouterKey(key: string): key is RouterKey {
  return Object.hasOwn(ROUTER_KEYS, key);
}

/** `router:set APP KEY [VALUE]` as a change; no VALUE means back to the server default. */
export function parseRouterSetting(key: string, raw: string | undefined): RouterSettingsChange {
  if (!isRouterKey(key)) throw new DeckError("bad_argument", `"${key.slice(0, 30)}" is not a router setting; use one of ${KEY_NAMES.join(", ")}`);
  const field = ROUTER_KEYS[key];
  if (raw === undefined) return { [field]: null };
  let value: number | boolean | null = null;
  switch (key) {
    case "rate-limit":
      value = /^\d{1,7}(\.\d{1,6})?$/.test(raw) ? Number(raw) : null;
      if (value !== null && !isRateLimitRps(value)) value = null;
      break;
    case "rate-burst":
      value = /^\d{1,7}$/.test(raw) ? Number(raw) : null;
      if (value !== null && (value < 1 || value > ROUTER_LIMITS.rateLimitBurst)) value = null;
      break;
    case "max-body-size":
      value = raw.length <= 20 ? parseBodySize(raw) : null;
      break;
    case "redirect-https":
    case "hsts":
      value = raw === "true" ? true : raw === "false" ? false : null;
      break;
  }
  if (value === null) throw badValue(key, raw);
  return { [field]: value };
}

/** Checks a change from either face (parseRouterSetting and the API's schema check the same bounds first). */
function checkChange(change: RouterSettingsChange): Partial<AppRouterSettings> {
  const out: Partial<AppRouterSettings> = {};
  const inRange = (v: number | null | undefined, min: number, max: number, integer: boolean) =>
    v === undefined || v === null || (Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v)));
  for (const field of Object.keys(change)) {
    if (!(Object.values(ROUTER_KEYS) as string[]).includes(field)) throw new DeckError("bad_argument", `"${field.slice(0, 30)}" is not a router setting`);
  }
  if (change.rateLimitRps !== undefined && change.rateLimitRps !== null && !isRateLimitRps(change.rateLimitRps)) throw badValue("rate-limit", String(change.rateLimitRps));
  if (!inRange(change.rateLimitBurst, 1, ROUTER_LIMITS.rateLimitBurst, true)) throw badValue("rate-burst", String(change.rateLimitBurst));
  if (!inRange(change.maxBodyBytes, 0, ROUTER_LIMITS.maxBodyBytes, true)) throw badValue("max-body-size", String(change.maxBodyBytes));
  if (change.rateLimitRps !== undefined) out.rateLimitRps = change.rateLimitRps;
  if (change.rateLimitBurst !== undefined) out.rateLimitBurst = change.rateLimitBurst;
  if (change.maxBodyBytes !== undefined) out.maxBodyBytes = change.maxBodyBytes;
  // The HTTPS options are off unless asked for: their default is false.
  if (change.redirectHttps !== undefined) out.redirectHttps = change.redirectHttps ?? false;
  if (change.hsts !== undefined) out.hsts = change.hsts ?? false;
  return out;
}

export interface RouterSettingView {
  key: RouterKey;
  /** The value in effect: the app's own, or the server default. */
  value: number | boolean;
  /** True when the app has no value of its own. */
  default: boolean;
  /**
   * Set when the value in effect follows from another of the app's own settings instead of the server
   * default: an app with its own rate-limit and no rate-burst gets twice its rate (at least 1).
   */
  derivedFrom?: "rate-limit";
}

export interface RouterReport {
  app: string;
  maintenance: boolean;
  stopped: boolean;
  settings: Record<RouterField, RouterSettingView>;
}

/**
 * The settings in effect, resolved as the router resolves them: the app's own value, else the server
 * default; except that an app's own rate-limit brings its own burst (burstForRate), since a server
 * burst sized for DECK_RATE_LIMIT says nothing about the app's rate.
 */
function reportOf(deps: DeployDeps, app: AppRow): RouterReport {
  const r = app.router;
  const c = deps.config;
  const view = (key: RouterKey, own: number | boolean | null, fallback: number | boolean): RouterSettingView =>
    ({ key, value: own ?? fallback, default: own === null });
  const burst: RouterSettingView = r.rateLimitBurst === null && r.rateLimitRps !== null
    ? { key: "rate-burst", value: burstForRate(r.rateLimitRps), default: true, derivedFrom: "rate-limit" }
    : view("rate-burst", r.rateLimitBurst, c.rateLimitBurst);
  return {
    app: app.name,
    maintenance: r.maintenance,
    stopped: app.stopped,
    settings: {
      rateLimitRps: view("rate-limit", r.rateLimitRps, c.rateLimitRps),
      rateLimitBurst: burst,
      maxBodyBytes: view("max-body-size", r.maxBodyBytes, c.maxBodyBytes),
      redirectHttps: view("redirect-https", r.redirectHttps ? true : null, false),
      hsts: view("hsts", r.hsts ? true : null, false),
    },
  };
}

/** Changes some of the app's router settings (null = back to the server default); applies at once. */
export async function setRouterSettings(deps: DeployDeps, caller: Caller, name: string, change: RouterSettingsChange): Promise<RouterReport> {
  const app = await authorizeApp(deps.db, caller, "router:set", name);
  const update = checkChange(change);
  if (Object.keys(update).length === 0) throw new DeckError("bad_argument", `no setting given; use one of ${KEY_NAMES.join(", ")}`);
  await setAppRouterSettings(deps.db, app.id, update);
  const fresh = await reloadApp(deps, app);
  const previous = Object.fromEntries(Object.keys(update).map((k) => [k, app.router[k as keyof AppRouterSettings]])) as Partial<AppRouterSettings>;
  await applyOrUndo(deps, fresh, () => setAppRouterSettings(deps.db, app.id, previous), "settings unchanged");
  await recordAction(deps, caller, "router:set", app.name, { settings: update });
  return reportOf(deps, fresh);
}

export async function routerReport(deps: DeployDeps, caller: Caller, name: string): Promise<RouterReport> {
  return reportOf(deps, await authorizeApp(deps.db, caller, "app:read", name));
}

const UNITS: [string, number][] = [["t", 1024 ** 4], ["g", 1024 ** 3], ["m", 1024 ** 2], ["k", 1024]];

/** 10485760 → "10m"; sizes that are no whole number of a unit stay in bytes. */
export function formatByteSize(bytes: number): string {
  for (const [unit, size] of UNITS) if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/**
 * One setting as router:report shows it: `2/s per client IP`, `100m (default)`, `0 (no limit)`,
 * `4 (default: twice the rate-limit)`.
 */
export function describeSetting(s: RouterSettingView): string {
  if (s.derivedFrom === "rate-limit") return `${s.value} (default: twice the rate-limit)`;
  const notes = s.default ? ["default"] : [];
  let text: string;
  if (typeof s.value === "boolean") text = String(s.value);
  else if (s.value === 0 && s.key !== "rate-burst") {
    text = "0";
    notes.unshift("no limit");
  } else if (s.key === "rate-limit") text = `${s.value}/s per client IP`;
  else if (s.key === "max-body-size") text = formatByteSize(s.value);
  else text = String(s.value);
  return notes.length ? `${text} (${notes.join(", ")})` : text;
}
