import { canSee, checkAppName, decide, DeckError, type Action, type Actor, type Role } from "../core/index.ts";
import { appRolesOf, audit, findApp, membershipsOf, type AppRow, type Db, type UserRow } from "../store/queries/index.ts";

export interface Caller {
  user: UserRow; actor: Actor; sourceIp?: string | null; via: "ssh" | "http" | "git" | "cli";
  /** The platform admin looking through this user's eyes (`X-Deck-View-As`, reads only); absent otherwise. */
  viewedBy?: { id: number; email: string };
}

/**
 * Who a refusal is written down against: the caller, or, while a platform admin views as them, the
 * admin (the user tried nothing), with the user named in the data.
 */
export function refusedBy(caller: Caller): { userId: number; via: Caller["via"]; viewingAs?: string } {
  return caller.viewedBy ? { userId: caller.viewedBy.id, via: caller.via, viewingAs: caller.user.email } : { userId: caller.user.id, via: caller.via };
}

export async function callerFor(db: Db, user: UserRow, via: Caller["via"], sourceIp?: string | null): Promise<Caller> {
  const roles = new Map<number, Role>();
  for (const m of await membershipsOf(db, user.id)) roles.set(m.orgId, m.role as Role);
  const appRoles = new Map<number, Role>();
  for (const g of await appRolesOf(db, user.id)) appRoles.set(g.appId, g.role as Role);
  return { user, actor: { userId: user.id, isAdmin: user.isAdmin, roles, appRoles }, sourceIp, via };
}

/**
 * Loads an app the caller is allowed to act on. An app in an org the caller cannot see is reported
 * exactly like a missing one, so names of other orgs' apps never leak.
 */
export async function authorizeApp(db: Db, caller: Caller, action: Action, rawName: string): Promise<AppRow> {
  const check = checkAppName(rawName);
  if (!check.ok) throw new DeckError("invalid_app_name", check.message);
  const app = await findApp(db, check.name);
  const target = app ? { orgId: app.orgId, appId: app.id } : { orgId: -1 };
  if (!app || !canSee(caller.actor, target)) throw new DeckError("app_not_found", `app "${check.name}" does not exist (see apps:list)`);
  const d = decide(caller.actor, action, target);
  if (!d.allow) {
    const { userId, ...data } = refusedBy(caller);
    await audit(db, { userId, action, target: app.name, sourceIp: caller.sourceIp, result: "denied", data });
    throw new DeckError("forbidden", `permission denied: ${action} on ${app.name} needs a role that grants it (ask an owner or admin of the app's organisation)`);
  }
  return app;
}

/**
 * Config values in clear are for those who may change them: revealing is the `config:set` action, for
 * SSH's `config:show --reveal` and the API's `?reveal=true` alike. (A token must also carry the scope
 * that action needs; the API's route table takes it from the same action.) showConfig (ops/config.ts)
 * checks it.
 */
export const REVEAL_CONFIG: Action = "config:set";

/** The org new apps of this caller go into: the first org where they may create apps. */
export function orgForNewApp(caller: Caller): number | null {
  for (const [orgId] of caller.actor.roles) {
    if (decide(caller.actor, "app:create", orgId).allow) return orgId;
  }
  return null;
}
