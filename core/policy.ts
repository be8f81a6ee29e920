/**
 * Who may do what. One table decides for git, SSH commands and the REST API.
 * Platform admins may do everything; everyone else acts through their role in the app's organisation,
 * or a role granted on that one app (a per-app grant wins over the org role for that app).
 */
export type Role = "owner" | "admin" | "member" | "viewer";
export const ROLES: readonly Role[] = ["viewer", "member", "admin", "owner"];

export type Action =
  | "app:read" | "app:create" | "app:destroy"
  | "app:deploy" | "app:logs" | "config:get" | "config:set"
  | "ps:scale" | "ps:restart" | "release:rollback"
  | "domains:set" | "router:set" | "members:manage" | "audit:read" | "billing:manage"
  | "alerts:manage" | "notify:manage" | "drains:manage";

const VIEWER: Action[] = ["app:read"];
const MEMBER: Action[] = [...VIEWER, "app:create", "app:deploy", "app:logs", "config:get", "ps:restart"];
const ADMIN: Action[] = [
  ...MEMBER, "config:set", "ps:scale", "release:rollback", "domains:set", "router:set", "members:manage", "audit:read",
  "alerts:manage", "notify:manage", "drains:manage",
];
const OWNER: Action[] = [...ADMIN, "app:destroy", "billing:manage"];

export const ROLE_ACTIONS: Record<Role, ReadonlySet<Action>> = {
  viewer: new Set(VIEWER),
  member: new Set(MEMBER),
  admin: new Set(ADMIN),
  owner: new Set(OWNER),
};

export interface Actor {
  userId: number;
  isAdmin: boolean;
  /** orgId → role */
  roles: Map<number, Role>;
  /** appId → role granted on that app alone */
  appRoles?: Map<number, Role>;
}

export interface Target { orgId: number; appId?: number }

export type Decision = { allow: true } | { allow: false; missing: Action };

export function roleFor(actor: Actor, target: Target): Role | undefined {
  if (target.appId !== undefined) {
    const granted = actor.appRoles?.get(target.appId);
    if (granted) return granted;
  }
  return actor.roles.get(target.orgId);
}

export function decide(actor: Actor, action: Action, target: Target | number): Decision {
  if (actor.isAdmin) return { allow: true };
  const t = typeof target === "number" ? { orgId: target } : target;
  const role = roleFor(actor, t);
  if (role && ROLE_ACTIONS[role].has(action)) return { allow: true };
  return { allow: false, missing: action };
}

/** Whether the actor may know the app exists (denials never reveal other orgs' apps). */
export function canSee(actor: Actor, target: Target | number): boolean {
  if (actor.isAdmin) return true;
  const t = typeof target === "number" ? { orgId: target } : target;
  return roleFor(actor, t) !== undefined;
}

export function isRole(v: string): v is Role {
  return (ROLES as readonly string[]).includes(v);
}
