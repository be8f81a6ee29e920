/**
 * Who may do what. One table decides for git, SSH commands and (later) the REST API.
 * Platform admins may do everything; everyone else acts through their role in the app's organisation.
 */
export type Role = "owner" | "admin" | "member" | "viewer";
export type Action =
  | "app:read" | "app:create" | "app:destroy"
  | "app:deploy" | "app:logs" | "config:get" | "config:set"
  | "ps:scale" | "ps:restart" | "release:rollback";

const ALLOWED: Record<Role, ReadonlySet<Action>> = {
  viewer: new Set(["app:read"]),
  member: new Set(["app:read", "app:create", "app:deploy", "app:logs", "config:get", "ps:restart"]),
  admin: new Set(["app:read", "app:create", "app:deploy", "app:logs", "config:get", "config:set", "ps:scale", "ps:restart", "release:rollback"]),
  owner: new Set(["app:read", "app:create", "app:destroy", "app:deploy", "app:logs", "config:get", "config:set", "ps:scale", "ps:restart", "release:rollback"]),
};

export interface Actor { userId: number; isAdmin: boolean; roles: Map<number, Role> /* orgId → role */ }

export type Decision = { allow: true } | { allow: false; missing: Action };

export function decide(actor: Actor, action: Action, orgId: number): Decision {
  if (actor.isAdmin) return { allow: true };
  const role = actor.roles.get(orgId);
  if (role && ALLOWED[role].has(action)) return { allow: true };
  return { allow: false, missing: action };
}

/** Whether the actor can see the org's apps at all (used so denials never reveal other orgs' apps). */
export function canSee(actor: Actor, orgId: number): boolean {
  return actor.isAdmin || actor.roles.has(orgId);
}
