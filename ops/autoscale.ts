/**
 * Autoscaling of an app's process types (ps:autoscale): its settings, what deck decided, and the scale
 * deck itself runs when monitor/autoscale decides (the same path as ps:scale: a blue-green redeploy).
 */
import { checkAutoscaleSettings, DeckError, processCount, type AutoscaleSettings } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  deleteAutoscaleSettings, findApp, findBuild, listAutoscaleDecisions, listAutoscaleSettings, saveAutoscaleSettings,
  type AppRow, type AutoscaleDecisionRow, type AutoscaleSettingsRow,
} from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";
import { scale } from "./processes.ts";
import { liveRelease } from "./releases.ts";

/** Decisions `ps:autoscale APP` and the API show. */
export const AUTOSCALE_DECISIONS_SHOWN = 20;

export interface AutoscaleTypeView extends AutoscaleSettings {
  /** Processes of the type the app runs now. */
  current: number;
  updatedAt: string;
}

export interface AutoscaleDecisionView {
  at: string;
  type: string;
  direction: "out" | "in";
  from: number;
  to: number;
  reason: string;
  /** `scaling` while its redeploy runs. */
  status: "scaling" | "done" | "failed";
  error: string | null;
}

export interface AutoscaleView {
  app: string;
  /** Seconds between rounds (DECK_AUTOSCALE_INTERVAL). */
  intervalSeconds: number;
  types: AutoscaleTypeView[];
  /** Newest first. */
  decisions: AutoscaleDecisionView[];
}

const typeView = (app: AppRow, s: AutoscaleSettingsRow): AutoscaleTypeView => ({
  type: s.type, min: s.min, max: s.max, p95Ms: s.p95Ms, cpuPercent: s.cpuPercent, rps: s.rps, current: processCount(app.formation, s.type), updatedAt: s.updatedAt,
});

const decisionView = (d: AutoscaleDecisionRow): AutoscaleDecisionView => ({
  at: d.at, type: d.type, direction: d.direction, from: d.from, to: d.to, reason: d.reason, status: d.status === "pending" ? "scaling" : d.status, error: d.error,
});

/** The app's autoscaled types and deck's last decisions (needs app:read). */
export async function autoscaleOf(deps: DeployDeps, caller: Caller, appName: string): Promise<AutoscaleView> {
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  const [settings, decisions] = await Promise.all([listAutoscaleSettings(deps.db, app.id), listAutoscaleDecisions(deps.db, app.id, AUTOSCALE_DECISIONS_SHOWN)]);
  return { app: app.name, intervalSeconds: deps.config.autoscaleInterval, types: settings.map((s) => typeView(app, s)), decisions: decisions.map(decisionView) };
}

/**
 * Autoscales a process type between min and max on its targets, replacing its earlier settings. The
 * type must be one the live release runs (any type before the first release). Needs ps:scale.
 */
export async function setAutoscale(deps: DeployDeps, caller: Caller, appName: string, settings: AutoscaleSettings): Promise<AutoscaleTypeView> {
  const checked = checkAutoscaleSettings(settings);
  if (!checked.ok) throw new DeckError("bad_argument", checked.message);
  const app = await authorizeApp(deps.db, caller, "ps:scale", appName);
  const live = await liveRelease(deps, app);
  const procfile = live ? (await findBuild(deps.db, live.buildId))?.procfile : null;
  if (procfile) {
    const types = Object.keys(procfile).filter((t) => t !== "release");
    if (!types.includes(settings.type)) throw new DeckError("bad_argument", `${app.name} has no process type "${settings.type}" (types: ${types.join(", ")})`);
  }
  const row = await saveAutoscaleSettings(deps.db, app.id, checked.settings, caller.user.id);
  const { type, min, max, p95Ms, cpuPercent, rps } = row;
  await recordAction(deps, caller, "ps:autoscale:set", app.name, { type, min, max, p95Ms, cpuPercent, rps });
  return typeView(app, row);
}

/** Stops autoscaling a process type; its processes stay as they are. Needs ps:scale. */
export async function disableAutoscale(deps: DeployDeps, caller: Caller, appName: string, type: string): Promise<{ app: string; type: string; current: number }> {
  const app = await authorizeApp(deps.db, caller, "ps:scale", appName);
  const row = await deleteAutoscaleSettings(deps.db, app.id, type);
  if (!row) throw new DeckError("not_found", `${app.name}'s ${type.slice(0, 31)} processes are not autoscaled (see ps:autoscale ${app.name})`);
  await recordAction(deps, caller, "ps:autoscale:off", app.name, { type });
  return { app: app.name, type, current: processCount(app.formation, type) };
}

/**
 * Deck itself, scaling an app on its autoscaling settings: allowed everything, and no user, so the
 * deployment it makes carries no creator and the audit log shows no one.
 */
const DECK_AUTOSCALER: Caller = {
  // The rows the redeploy writes take `user.id` as their creator, which may be NULL in the database.
  user: { id: null as unknown as number, email: "", name: "deck (autoscale)", isAdmin: true },
  actor: { userId: 0, isAdmin: true, roles: new Map() },
  sourceIp: null,
  via: "cli",
};

/** What the autoscaling controller calls to carry out a decision: ops `scale`, as deck. */
export function scaleForAutoscale(deps: DeployDeps): (app: { id: number; name: string }, type: string, to: number, from: number) => Promise<void> {
  return async (app, type, to, from) => {
    // The app the round judged: not a later app of the same name (checked again once the scale's turn comes).
    const current = await findApp(deps.db, app.name);
    if (!current || current.id !== app.id) throw new DeckError("conflict", `${app.name} is no longer the app autoscaling judged; not scaled`);
    // The controller writes the one audit entry of the change (ps:autoscale, with from, to and why).
    await scale(deps, DECK_AUTOSCALER, app.name, { [type]: to }, (line) => deps.log(`autoscale: ${app.name}: ${line.replace(/^-----> /, "")}`), {
      audit: false, expect: { appId: app.id, type, from },
    });
  };
}
