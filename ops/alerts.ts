/** An app's alert rules: list, add, remove, silence, and rollback on alert (monitor/alerts judges them). */
import {
  appAlertRules, DEFAULT_ALERT_KINDS, formatAlertRule, parseAlertDuration, parseAlertRule, type AlertKind, type AlertRuleSpec, type AlertState,
} from "../core/alerts.ts";
import { DeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  alertSettingsOf, alertSilenceOf, alertStatesOf, deleteAlertRule, endAlertSilences, insertAlertRule, insertAlertSilence, listAlertRules,
  removeDefaultAlertRule, setAutoRollback,
} from "../store/queries/alerts.ts";
import { audit, findApp, liveReleaseOf } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";
import { rollback } from "./releases.ts";

/** The longest silence: a week. */
export const MAX_SILENCE_SECONDS = 7 * 86_400;

export type AlertRuleStatus = "ok" | "pending" | "firing" | "silenced";

export interface AlertRuleView {
  /** A stored rule's number, or the kind of a default rule (`down`, `crash_loop`). */
  id: string;
  rule: string;
  kind: AlertKind;
  default: boolean;
  /** `silenced`: pending or firing while the app's notices are held. */
  state: AlertRuleStatus;
  /** What it saw last, in words; null before its first round. */
  value: string | null;
  /** Since when it is pending or firing (or ok again); null when nothing happened yet. */
  since: string | null;
}

export interface AlertsView {
  app: string;
  silencedUntil: string | null;
  autoRollback: boolean;
  rules: AlertRuleView[];
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function viewOf(id: string, spec: AlertRuleSpec, isDefault: boolean, s: AlertState | undefined, silenced: boolean): AlertRuleView {
  const active = s?.status === "firing" || s?.status === "pending";
  const state: AlertRuleStatus = active && silenced ? "silenced" : s?.status === "firing" ? "firing" : s?.status === "pending" ? "pending" : "ok";
  const since = s?.status === "firing" ? s.firedAt : s?.status === "pending" ? s.pendingSince : s?.resolvedAt ?? null;
  return { id, rule: formatAlertRule(spec), kind: spec.kind, default: isDefault, state, value: s?.words ? s.words : null, since: iso(since) };
}

/** The app's rules in effect with where each stands (needs app:read). */
export async function alertsOf(deps: DeployDeps, caller: Caller, appName: string): Promise<AlertsView> {
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  const [stored, settings, states, silencedUntil] = await Promise.all([
    listAlertRules(deps.db, app.id), alertSettingsOf(deps.db, app.id), alertStatesOf(deps.db, app.id), alertSilenceOf(deps.db, app.id, Date.now()),
  ]);
  const rules = appAlertRules(stored, settings.defaultsRemoved).map((r) => viewOf(r.id, r.spec, r.isDefault, states.get(r.id), silencedUntil !== null));
  return { app: app.name, silencedUntil, autoRollback: settings.autoRollback, rules };
}

/**
 * Adds a rule as users type it (`http_5xx>5% for 5m`). A rule of a default's kind (down, crash_loop)
 * replaces that default. Needs alerts:manage.
 */
/** Every rule is judged every round: an app's rules are few. */
export const MAX_RULES_PER_APP = 20;

export async function addAlertRule(deps: DeployDeps, caller: Caller, appName: string, text: string): Promise<AlertRuleView & { replaced: string | null }> {
  const parsed = parseAlertRule(text);
  if (!parsed.ok) throw new DeckError("bad_argument", parsed.message);
  const app = await authorizeApp(deps.db, caller, "alerts:manage", appName);
  const printed = formatAlertRule(parsed.rule);
  return deps.db.transaction(async (tx) => {
    const settings = await alertSettingsOf(tx, app.id);
    const current = appAlertRules(await listAlertRules(tx, app.id), settings.defaultsRemoved);
    if (current.length >= MAX_RULES_PER_APP) throw new DeckError("conflict", `${app.name} has ${current.length} alert rules, the most an app may have; remove one first (alerts:remove ${app.name} ID)`);
    const same = current.find((r) => formatAlertRule(r.spec) === printed);
    if (same) throw new DeckError("conflict", `${app.name} already has the rule ${printed} (id ${same.id}; see alerts:list ${app.name})`);
    const replaced = current.find((r) => r.isDefault && r.spec.kind === parsed.rule.kind) ?? null;
    if (replaced) await removeDefaultAlertRule(tx, app.id, parsed.rule.kind);
    const row = await insertAlertRule(tx, { appId: app.id, spec: parsed.rule, createdBy: caller.user.id });
    await audit(tx, { userId: caller.user.id, action: "alerts:add", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, id: row.id, rule: printed, ...(replaced ? { replaced: replaced.id } : {}) } });
    return { ...viewOf(String(row.id), row.spec, false, undefined, false), replaced: replaced ? formatAlertRule(replaced.spec) : null };
  });
}

/** Removes a rule by its id (a number, or `down` / `crash_loop` for a default). Needs alerts:manage. */
export async function removeAlertRule(deps: DeployDeps, caller: Caller, appName: string, rawId: string): Promise<{ id: string; rule: string }> {
  const app = await authorizeApp(deps.db, caller, "alerts:manage", appName);
  const notFound = () => new DeckError("not_found", `${app.name} has no alert rule ${rawId.slice(0, 20)} (see alerts:list ${app.name})`);
  if ((DEFAULT_ALERT_KINDS as readonly string[]).includes(rawId)) {
    const kind = rawId as AlertKind;
    const settings = await alertSettingsOf(deps.db, app.id);
    if (settings.defaultsRemoved.includes(kind) || !(await removeDefaultAlertRule(deps.db, app.id, kind))) throw notFound();
    await recordAction(deps, caller, "alerts:remove", app.name, { id: kind, rule: kind });
    return { id: kind, rule: kind };
  }
  if (!/^\d{1,15}$/.test(rawId)) {
    throw new DeckError("bad_argument", `"${rawId.slice(0, 20)}" is not an alert rule id: a number or a default's name (${DEFAULT_ALERT_KINDS.join(", ")}); see alerts:list ${app.name}`);
  }
  const row = await deleteAlertRule(deps.db, app.id, Number(rawId));
  if (!row) throw notFound();
  const rule = formatAlertRule(row.spec);
  await recordAction(deps, caller, "alerts:remove", app.name, { id: row.id, rule });
  return { id: String(row.id), rule };
}

/**
 * Holds the app's notices for a while (`30m`, `2h`, `1d`; at most 7d), or ends the silence (`off`).
 * Rules are still judged; one still firing when the silence ends is announced then. Needs alerts:manage.
 */
export async function silenceAlerts(deps: DeployDeps, caller: Caller, appName: string, duration: string): Promise<{ app: string; silencedUntil: string | null }> {
  const seconds = duration === "off" ? 0 : parseAlertDuration(duration);
  if (seconds === null || (duration !== "off" && (seconds < 1 || seconds > MAX_SILENCE_SECONDS))) {
    throw new DeckError("bad_argument", `"${duration.slice(0, 20)}" is not a silence: give a duration up to 7d (30m, 2h, 1d) or off`);
  }
  const app = await authorizeApp(deps.db, caller, "alerts:manage", appName);
  if (seconds === 0) {
    await endAlertSilences(deps.db, app.id);
    await recordAction(deps, caller, "alerts:silence", app.name, { until: null });
    return { app: app.name, silencedUntil: null };
  }
  await endAlertSilences(deps.db, app.id);
  const until = await insertAlertSilence(deps.db, { appId: app.id, untilMs: Date.now() + seconds * 1000, createdBy: caller.user.id });
  await recordAction(deps, caller, "alerts:silence", app.name, { until });
  return { app: app.name, silencedUntil: until };
}

/** Turns rollback on alert on or off for the app. Needs alerts:manage. */
export async function setAlertRollback(deps: DeployDeps, caller: Caller, appName: string, on: boolean): Promise<{ app: string; autoRollback: boolean }> {
  const app = await authorizeApp(deps.db, caller, "alerts:manage", appName);
  await setAutoRollback(deps.db, app.id, on);
  await recordAction(deps, caller, "alerts:auto-rollback", app.name, { on });
  return { app: app.name, autoRollback: on };
}

/** Reads `on` / `off` for alerts:rollback. */
export function parseOnOff(raw: string | undefined, usage: string): boolean {
  if (raw === "on") return true;
  if (raw === "off") return false;
  throw new DeckError("bad_argument", `say on or off; usage: ${usage}`);
}

/**
 * Deck itself, rolling an app back on an alert: allowed everything, and no user, so the release and
 * deployment it makes carry no creator and the audit log shows no one.
 */
const DECK_ITSELF: Caller = {
  // The rows rollback writes take `user.id` as their creator, which may be NULL in the database.
  user: { id: null as unknown as number, email: "", name: "deck (alerts)", isAdmin: true },
  actor: { userId: 0, isAdmin: true, roles: new Map() },
  sourceIp: null,
  via: "cli",
};

/** What the alert evaluator calls to roll an app back to the release before its live one (ops rollback, as deck). */
export function rollbackOnAlert(deps: DeployDeps): (app: { id: number; name: string; from: number }, reason: string) => Promise<{ version: number; target: number }> {
  return async (app, reason) => {
    // The app the rule judged, with the release it judged: not a later app of the same name, nor a
    // release pushed since the alert fired.
    const current = await findApp(deps.db, app.name);
    const live = current && current.id === app.id ? await liveReleaseOf(deps.db, current.id) : null;
    if (!current || current.id !== app.id) throw new DeckError("conflict", `${app.name} is no longer the app the alert was about; not rolled back`);
    if (live?.version !== app.from) throw new DeckError("conflict", `v${live?.version ?? "?"} went live after the alert on v${app.from}; not rolled back`);
    deps.log(`alerts: rolling ${app.name} back: ${reason}`);
    // Checked again once it is the app's turn in line: a deploy queued before this one may go live first.
    return rollback(deps, DECK_ITSELF, app.name, undefined, (line) => deps.log(`alerts: rollback of ${app.name}: ${line.replace(/^-----> /, "")}`), { appId: app.id, version: app.from });
  };
}
