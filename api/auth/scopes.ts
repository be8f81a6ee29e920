import type { Action } from "../../core/policy.ts";

/**
 * What a token may do, on top of what its user's role allows (both must agree). Scopes nest:
 * read ⊂ deploy ⊂ write ⊂ admin.
 * - read: look, change nothing
 * - deploy: read, plus deploy (a first push creates the app), restarts and logs (for CI)
 * - write: everything but the admin actions (destroy, billing, members)
 * - admin: everything
 */
export type Scope = "read" | "deploy" | "write" | "admin";
export const SCOPES: readonly Scope[] = ["read", "deploy", "write", "admin"];

/** The narrowest scope that permits each action. Every action must be listed, so a new one is classified deliberately. */
export const MINIMUM_SCOPE: Readonly<Record<Action, Scope>> = {
  "app:read": "read",
  "config:get": "read",
  "audit:read": "read",
  "app:deploy": "deploy",
  "app:logs": "deploy",
  "ps:restart": "deploy",
  "app:create": "deploy",
  "config:set": "write",
  "ps:scale": "write",
  "release:rollback": "write",
  "domains:set": "write",
  "router:set": "write",
  "alerts:manage": "write",
  "drains:manage": "write",
  // Channels reach people outside deck, under the org's name.
  "notify:manage": "admin",
  "app:destroy": "admin",
  "billing:manage": "admin",
  "members:manage": "admin",
};

const RANK: Record<Scope, number> = { read: 0, deploy: 1, write: 2, admin: 3 };

const actionsUpTo = (scope: Scope): ReadonlySet<Action> =>
  new Set((Object.keys(MINIMUM_SCOPE) as Action[]).filter((action) => RANK[MINIMUM_SCOPE[action]] <= RANK[scope]));

/** Scope → the actions it permits. */
export const SCOPE_ACTIONS: Readonly<Record<Scope, ReadonlySet<Action>>> = {
  read: actionsUpTo("read"),
  deploy: actionsUpTo("deploy"),
  write: actionsUpTo("write"),
  admin: actionsUpTo("admin"),
};

/** Whether the granted scopes include `needed` (scopes nest: admin covers write, deploy and read). */
export function scopeCovers(granted: readonly string[], needed: Scope): boolean {
  return granted.some((g) => isScope(g) && RANK[g] >= RANK[needed]);
}

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

/** Whether any of the token's scopes permits the action (the user's role is checked separately). */
export function scopesAllow(scopes: readonly string[], action: Action): boolean {
  return scopes.some((s) => isScope(s) && SCOPE_ACTIONS[s].has(action));
}
