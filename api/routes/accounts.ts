import { z } from "zod/v4";
import {
  addKey, createOrganization, createUserAsAdmin, deleteUser, listAllUsers, listKeys, listOrganizations, listOrgMembers, orgAudit, removeKey,
  removeOrgMember, resetUserMfa, revokeUserCredentials, setOrgMember, suspendUser, unsuspendUser, visibleOrg,
} from "../../ops/index.ts";
import { listEveryOrganization } from "../../ops/support.ts";
import { parsePublicKey } from "../../gitd/index.ts";
import { DeckError } from "../../core/index.ts";
import { defineRoute } from "../registry.ts";
import { email, offsetPage, orgParams, orgSlug, page, role } from "../schemas.ts";

defineRoute({
  method: "get", path: "/users/me", scope: "read", tag: "users", summary: "Who you are, your organisations and your token's scopes",
  handler: async ({ deps, caller }) => ({
    id: caller.user.id, email: caller.user.email, name: caller.user.name, isAdmin: caller.user.isAdmin, scopes: caller.scopes,
    organizations: (await listOrganizations(deps, caller)).filter((o) => o.role).map((o) => ({ slug: o.slug, role: o.role })),
  }),
});

defineRoute({
  method: "get", path: "/users", scope: "admin", tag: "users", summary: "All users (platform admins)", query: offsetPage,
  handler: async ({ deps, caller, query }) => {
    const items = await listAllUsers(deps, caller, { limit: query.limit, offset: query.offset });
    return { items, next: items.length === query.limit ? query.offset + query.limit : null };
  },
});

defineRoute({
  method: "post", path: "/users", scope: "admin", tag: "users", summary: "Create a user (platform admins)", status: 201,
  body: z.object({ email, name: z.string().max(200).optional(), isAdmin: z.boolean().optional(), org: orgSlug.optional(), role: role.optional(), password: z.string().min(1).max(200).optional() }).strict(),
  handler: async ({ deps, caller, body }) => {
    const u = await createUserAsAdmin(deps, caller, body);
    const setPassword = deps.extra.setPassword as ((db: unknown, userId: number, password: string) => Promise<void>) | undefined;
    if (body.password) {
      if (!setPassword) throw new DeckError("validation_failed", "passwords are not supported by this server");
      await setPassword(deps.db, u.id, body.password);
    }
    return u;
  },
});

defineRoute({
  method: "get", path: "/orgs", scope: "read", tag: "orgs",
  summary: "Your organisations; ?all=true every organisation with its plan, members and apps (platform admins)",
  scopeWhen: { query: "all", equals: "true", scope: "admin" },
  query: z.object({ all: z.enum(["true", "false"]).optional() }).strict(),
  handler: async ({ deps, caller, query }) => ({ items: query.all === "true" ? await listEveryOrganization(deps, caller) : await listOrganizations(deps, caller) }),
});

defineRoute({
  method: "post", path: "/orgs", scope: "write", tag: "orgs", summary: "Create an organisation (you become its owner)", status: 201,
  body: z.object({ slug: orgSlug, name: z.string().min(1).max(200).optional() }).strict(),
  handler: async ({ deps, caller, body }) => createOrganization(deps, caller, body),
});

defineRoute({
  method: "get", path: "/orgs/:org", scope: "read", tag: "orgs", summary: "One organisation", params: orgParams,
  handler: async ({ deps, caller, params }) => visibleOrg(deps, caller, params.org),
});

defineRoute({
  method: "get", path: "/orgs/:org/members", scope: "read", tag: "members", summary: "Members and their roles", params: orgParams,
  handler: async ({ deps, caller, params }) => ({ items: await listOrgMembers(deps, caller, params.org) }),
});

defineRoute({
  method: "put", path: "/orgs/:org/members", scope: "admin", tag: "members", summary: "Add a member or change their role", params: orgParams,
  body: z.object({ email, role }).strict(),
  handler: async ({ deps, caller, params, body }) => ({ items: await setOrgMember(deps, caller, params.org, body.email, body.role) }),
});

defineRoute({
  method: "delete", path: "/orgs/:org/members/:email", scope: "admin", tag: "members", summary: "Remove a member",
  params: z.object({ org: orgSlug, email }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeOrgMember(deps, caller, params.org, params.email);
  },
});

defineRoute({
  method: "get", path: "/orgs/:org/audit", scope: "read", tag: "audit", summary: "Audit trail of an organisation (admins and owners)", params: orgParams, query: page,
  handler: async ({ deps, caller, params, query }) => {
    const items = await orgAudit(deps, caller, params.org, query.limit, query.before);
    return { items, next: items.length === query.limit ? items[items.length - 1].id : null };
  },
});

defineRoute({
  method: "get", path: "/keys", scope: "read", tag: "keys", summary: "Your SSH keys",
  handler: async ({ deps, caller }) => ({ items: await listKeys(deps, caller) }),
});

defineRoute({
  method: "post", path: "/keys", scope: "admin", tag: "keys", summary: "Add an SSH public key", status: 201,
  body: z.object({ publicKey: z.string().min(1).max(16 * 1024), name: z.string().max(100).optional() }).strict(),
  handler: async ({ deps, caller, body }) => {
    const key = parsePublicKey(body.publicKey);
    return addKey(deps, caller, { publicKey: key.publicKey, fingerprint: key.fingerprint, name: body.name ?? key.comment });
  },
});

defineRoute({
  method: "delete", path: "/keys/:key", scope: "write", tag: "keys", summary: "Remove one of your SSH keys (by id or fingerprint)",
  params: z.object({ key: z.string().min(1).max(200) }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeKey(deps, caller, params.key);
  },
});

// ---------- administering users (platform admins) ----------
const userParams = z.object({ email }).strict();

defineRoute({
  method: "post", path: "/users/:email/suspend", scope: "admin", tag: "users", summary: "Suspend a user: no sign-in, tokens, SSH or git; their apps keep running unless stopApps (platform admins)",
  params: userParams,
  body: z.object({ reason: z.string().max(500).optional(), stopApps: z.boolean().optional() }).strict(),
  handler: async ({ deps, caller, params, body }) => {
    const output: string[] = [];
    const result = await suspendUser(deps, caller, params.email, { reason: body.reason, stopApps: body.stopApps, out: (l) => output.push(l) });
    return { ...result, output };
  },
});

defineRoute({
  method: "post", path: "/users/:email/unsuspend", scope: "admin", tag: "users", summary: "Let a suspended user in again (platform admins)", params: userParams,
  handler: async ({ deps, caller, params }) => unsuspendUser(deps, caller, params.email),
});

defineRoute({
  method: "delete", path: "/users/:email", scope: "admin", tag: "users", summary: "Delete a user; ?confirm= repeats the email (platform admins)", params: userParams,
  query: z.object({ confirm: z.string().max(254).optional() }).strict(),
  handler: async ({ deps, caller, params, query }) => ({ ...(await deleteUser(deps, caller, params.email, query.confirm)), deleted: true }),
});

defineRoute({
  method: "post", path: "/users/:email/mfa/reset", scope: "admin", tag: "users", summary: "Turn off a user's two-factor authentication (platform admins)", params: userParams,
  handler: async ({ deps, caller, params }) => resetUserMfa(deps, caller, params.email),
});

defineRoute({
  method: "post", path: "/users/:email/credentials/revoke", scope: "admin", tag: "users", summary: "Revoke all of a user's personal tokens and SSH keys (platform admins)", params: userParams,
  handler: async ({ deps, caller, params }) => revokeUserCredentials(deps, caller, params.email),
});
