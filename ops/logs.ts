import { DeckError } from "../core/index.ts";
import { parseByteSize } from "../config/index.ts";
import { followLog, readLogTail, type DeployDeps } from "../deploy/index.ts";
import {
  LOG_RETENTION_DEFAULTS, maskDrainUrl, parseDrainUrl, parseDuration, parseSources, RETENTION_BOUNDS, type LogSource,
} from "../monitor/logs/index.ts";
import { deleteLogDrain, findLogRetention, insertLogDrain, listLogDrains, saveLogRetention } from "../store/queries/logs.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";

export * from "./log-search.ts";

/** An app's log as `logs APP` and `GET /apps/APP/logs` show it: the last lines, then, if asked, each new one. */
export interface AppLog {
  lines: string[];
  /** Each line appended from now on, until `signal` aborts. */
  follow(onLine: (line: string) => void, signal: AbortSignal): Promise<void>;
}

/** The last `lines` lines of the app's log (app and build output), for whoever may read its logs. */
export async function readAppLog(deps: DeployDeps, caller: Caller, name: string, lines: number): Promise<AppLog> {
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const file = deps.paths.appLog(app.name);
  return { lines: await readLogTail(file, lines), follow: (onLine, signal) => followLog(file, onLine, signal) };
}

// ---------- retention ----------

export interface RetentionSetting {
  value: number;
  /** True when it is the server default (the app has no setting of its own). */
  default: boolean;
}

export interface RetentionReport {
  app: string;
  /** Bytes of the newest lines kept. */
  size: RetentionSetting;
  /** Seconds lines are kept. */
  age: RetentionSetting;
}

/** A change: a value like 100m / 14d, "default" for the server default; left out = unchanged. */
export interface RetentionChange {
  size?: string;
  age?: string;
}

const mib = (b: number) => b / 1024 / 1024;

function parseRetentionSize(raw: string): number | null {
  if (raw === "default") return null;
  const bytes = parseByteSize(raw);
  if (bytes === null || bytes < RETENTION_BOUNDS.minBytes || bytes > RETENTION_BOUNDS.maxBytes) {
    throw new DeckError("bad_argument", `--size takes a size from ${mib(RETENTION_BOUNDS.minBytes)}m to ${RETENTION_BOUNDS.maxBytes / 1024 ** 3}g (like 100m or 500m), or default; got "${raw.slice(0, 30)}"`);
  }
  return bytes;
}

function parseRetentionAge(raw: string): number | null {
  if (raw === "default") return null;
  const ms = parseDuration(raw);
  if (ms === null || ms < RETENTION_BOUNDS.minAgeMs || ms > RETENTION_BOUNDS.maxAgeMs) {
    throw new DeckError("bad_argument", `--age takes a duration from 1h to ${RETENTION_BOUNDS.maxAgeMs / 86_400_000}d (like 12h, 14d or 2w), or default; got "${raw.slice(0, 30)}"`);
  }
  return Math.floor(ms / 1000);
}

/** Shows, and with a change sets, how much of the app's log deck keeps (needs drains:manage). */
export async function logRetention(deps: DeployDeps, caller: Caller, name: string, change: RetentionChange = {}): Promise<RetentionReport> {
  const size = change.size === undefined ? undefined : parseRetentionSize(change.size);
  const age = change.age === undefined ? undefined : parseRetentionAge(change.age);
  const app = await authorizeApp(deps.db, caller, "drains:manage", name);
  let row = await findLogRetention(deps.db, app.id);
  if (size !== undefined || age !== undefined) {
    row = { maxBytes: size === undefined ? row.maxBytes : size, maxAgeSeconds: age === undefined ? row.maxAgeSeconds : age };
    await saveLogRetention(deps.db, app.id, row);
    await recordAction(deps, caller, "logs:retention", app.name, { maxBytes: row.maxBytes, maxAgeSeconds: row.maxAgeSeconds });
  }
  return {
    app: app.name,
    size: { value: row.maxBytes ?? LOG_RETENTION_DEFAULTS.maxBytes, default: row.maxBytes === null },
    age: { value: row.maxAgeSeconds ?? LOG_RETENTION_DEFAULTS.maxAgeMs / 1000, default: row.maxAgeSeconds === null },
  };
}

// ---------- drains ----------

/** At most this many drains per app. */
export const MAX_DRAINS_PER_APP = 10;

export interface DrainView {
  id: number;
  /** Masked: host and port in clear, secrets as ***. */
  url: string;
  sources: LogSource[];
  delivered: number;
  dropped: number;
  lastError: string | null;
  lastErrorAt: string | null;
  lastDeliveredAt: string | null;
  createdAt: string;
}

/** Ships the app's log lines to `rawUrl` from now on (needs drains:manage). Sources: app,deck by default. */
export async function addDrain(deps: DeployDeps, caller: Caller, name: string, rawUrl: string, rawSources = "app,deck"): Promise<DrainView> {
  const target = parseDrainUrl(rawUrl);
  if (!target.ok) throw new DeckError("bad_argument", target.message);
  const sources = parseSources(rawSources);
  if (!sources.ok) throw new DeckError("bad_argument", sources.message);
  const app = await authorizeApp(deps.db, caller, "drains:manage", name);
  const existing = await listLogDrains(deps.db, app.id);
  if (existing.some((d) => d.url === target.value.url)) throw new DeckError("conflict", `${app.name} already drains to ${maskDrainUrl(target.value.url)} (drains:list ${app.name})`);
  if (existing.length >= MAX_DRAINS_PER_APP) throw new DeckError("conflict", `${app.name} has ${MAX_DRAINS_PER_APP} drains, the most an app may have: remove one first (drains:remove ${app.name} ID)`);
  const order: LogSource[] = ["app", "deck", "router"];
  const id = await insertLogDrain(deps.db, { appId: app.id, url: target.value.url, kind: target.value.kind, sources: order.filter((s) => sources.value.has(s)), createdBy: caller.user.id });
  await recordAction(deps, caller, "drains:add", app.name, { id, url: maskDrainUrl(target.value.url) });
  const view = (await listDrains(deps, caller, app.name)).find((d) => d.id === id);
  if (!view) throw new DeckError("not_found", `drain ${id} of ${app.name} was removed meanwhile`);
  return view;
}

export async function listDrains(deps: DeployDeps, caller: Caller, name: string): Promise<DrainView[]> {
  const app = await authorizeApp(deps.db, caller, "drains:manage", name);
  return (await listLogDrains(deps.db, app.id)).map((d) => ({
    id: d.id, url: maskDrainUrl(d.url), sources: d.sources, delivered: d.delivered, dropped: d.dropped,
    lastError: d.lastError, lastErrorAt: d.lastErrorAt, lastDeliveredAt: d.lastDeliveredAt, createdAt: d.createdAt,
  }));
}

export async function removeDrain(deps: DeployDeps, caller: Caller, name: string, rawId: string | number): Promise<void> {
  const id = typeof rawId === "number" ? rawId : /^\d{1,15}$/.test(rawId) ? Number(rawId) : NaN;
  if (!Number.isSafeInteger(id)) throw new DeckError("bad_argument", `a drain id is a number (drains:list ${name} shows them); got "${String(rawId).slice(0, 20)}"`);
  const app = await authorizeApp(deps.db, caller, "drains:manage", name);
  if (!(await deleteLogDrain(deps.db, app.id, id))) throw new DeckError("not_found", `${app.name} has no drain ${id} (drains:list ${app.name} shows its drains)`);
  await recordAction(deps, caller, "drains:remove", app.name, { id });
}
