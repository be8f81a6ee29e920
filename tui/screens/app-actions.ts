/**
 * What the app screen's action keys may do for the caller, and how a typed formation is read. Pure:
 * the screen passes in the role deck reported for the app and the token's scopes.
 */
import { isRole, ROLE_ACTIONS, type Action } from "../../core/index.ts";
import { scopesAllow } from "../../api/auth/scopes.ts";

export type AppAction = "restart" | "scale" | "rollback" | "maintenance";

/** The app screen's actions in the order the key line shows them, with the policy action deck checks for each. */
export const APP_ACTIONS: readonly { action: AppAction; key: string; needs: Action }[] = [
  { action: "restart", key: "r", needs: "ps:restart" },
  { action: "scale", key: "S", needs: "ps:scale" },
  { action: "rollback", key: "b", needs: "release:rollback" },
  // POST /apps/:app/maintenance is a router setting.
  { action: "maintenance", key: "m", needs: "router:set" },
];

/** The role `GET /apps/:app` reports for a platform admin with no role in the app's organisation. */
export const PLATFORM_ADMIN = "platform-admin";

/**
 * The actions deck would let this caller take on the app: the role must grant the action (deck's own
 * table, core/policy.ts) and the token's scopes must cover it. An unknown role or unknown scopes
 * allow nothing, so a key is never shown that deck would refuse.
 */
export function allowedAppActions(role: string | null | undefined, scopes: readonly string[] | undefined): Set<AppAction> {
  const allowed = new Set<AppAction>();
  if (!role || !scopes) return allowed;
  for (const a of APP_ACTIONS) {
    const byRole = role === PLATFORM_ADMIN || (isRole(role) && ROLE_ACTIONS[role].has(a.needs));
    if (byRole && scopesAllow(scopes, a.needs)) allowed.add(a.action);
  }
  return allowed;
}

export type FormationAnswer = { ok: true; formation: Record<string, number> } | { ok: false; message: string };

const PROCESS_TYPE = /^[a-z][a-z0-9_-]{0,30}$/;
/** deck's API takes 0–50 processes of a type. */
const MOST_PROCESSES = 50;

/** "web=2 worker=1" (spaces or commas between) → { web: 2, worker: 1 }, or one line saying what is wrong. */
export function parseFormation(text: string): FormationAnswer {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) return { ok: false, message: "nothing scaled: give TYPE=COUNT, e.g. web=2 worker=1" };
  const formation: Record<string, number> = {};
  for (const part of parts) {
    const m = /^([^=]+)=(\d{1,2})$/.exec(part);
    const count = m ? Number(m[2]) : NaN;
    if (!m || count > MOST_PROCESSES) return { ok: false, message: `nothing scaled: "${part.slice(0, 30)}" is not TYPE=COUNT, COUNT 0–${MOST_PROCESSES} (e.g. web=2)` };
    const type = m[1]!;
    if (!PROCESS_TYPE.test(type)) return { ok: false, message: `nothing scaled: "${type.slice(0, 30)}" is not a process type (lower-case letters, digits, - and _)` };
    if (type in formation) return { ok: false, message: `nothing scaled: ${type} is given twice` };
    formation[type] = count;
  }
  return { ok: true, formation };
}
