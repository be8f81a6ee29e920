import { DeckError, decide, isRole, type Role } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  addMember, audit, auditForOrg, auditForTargets, countOwners, deleteSshKey, findOrgBySlug, findSshKeyByFingerprint, findUserByEmail,
  grantAppRole, insertOrganization, insertSshKey, insertUser, listAppMembers, listMembers, listOrgs, listSshKeys, removeMember, revokeAppRole,
  appsCreatedBy, clearMfa, countActiveAdmins, deleteAllSshKeys, deleteUserRow, findMfaState, findUserRowByEmail, listUsersForAdmin,
  orgsSolelyOwnedBy, revokeAllPersonalTokens, setUserSuspension,
  type AdminUserRow, type AuditRow, type MemberRow, type OrgRow, type SshKeyRow, type UserRow,
} from "../store/queries/index.ts";
import { authorizeApp, refusedBy, type Caller } from "./access.ts";
import { recordAction, type Out } from "./audit.ts";
import { stopApp } from "./processes.ts";

/**
 * Organisations, members, per-app grants, SSH keys, users and the audit trail: the account side of
 * the operations SSH commands and the REST API share.
 */
const SLUG = /^[a-z][a-z0-9-]{1,38}$/;

// ---------- organisations ----------
export async function listOrganizations(deps: DeployDeps, caller: Caller): Promise<(OrgRow & { role: string | null })[]> {
  const orgs = await listOrgs(deps.db, caller.actor.isAdmin ? "all" : [...caller.actor.roles.keys()]);
  return orgs.map((o) => ({ ...o, role: caller.actor.roles.get(o.id) ?? null }));
}

export async function createOrganization(deps: DeployDeps, caller: Caller, input: { slug: string; name?: string }): Promise<OrgRow> {
  if (!SLUG.test(input.slug)) throw new DeckError("validation_failed", `"${input.slug.slice(0, 40)}" is not an organisation slug: 2-39 lowercase letters, digits and dashes, starting with a letter`);
  if (await findOrgBySlug(deps.db, input.slug)) throw new DeckError("conflict", `organisation "${input.slug}" already exists`);
  const org = await deps.db.transaction(async (tx) => {
    const o = await insertOrganization(tx, { name: input.name ?? input.slug, slug: input.slug });
    await addMember(tx, o.id, caller.user.id, "owner");
    return o;
  });
  caller.actor.roles.set(org.id, "owner");
  await recordAction(deps, caller, "org:create", `org:${org.slug}`, { orgId: org.id });
  return (await findOrgBySlug(deps.db, org.slug))!;
}

/** An org the caller belongs to; any other org is reported as missing. */
export async function visibleOrg(deps: DeployDeps, caller: Caller, slug: string): Promise<OrgRow> {
  const org = SLUG.test(slug) ? await findOrgBySlug(deps.db, slug) : null;
  if (!org || !(caller.actor.isAdmin || caller.actor.roles.has(org.id))) throw new DeckError("not_found", `organisation "${slug.slice(0, 40)}" does not exist`);
  return org;
}

async function orgForManaging(deps: DeployDeps, caller: Caller, slug: string, action: "members:manage" | "audit:read"): Promise<OrgRow> {
  const org = await visibleOrg(deps, caller, slug);
  const d = decide(caller.actor, action, org.id);
  if (!d.allow) {
    const { userId, ...by } = refusedBy(caller);
    await audit(deps.db, { userId, action, target: `org:${org.slug}`, sourceIp: caller.sourceIp, result: "denied", data: { ...by, orgId: org.id } });
    throw new DeckError("forbidden", `permission denied: ${action} in ${org.slug} needs the admin or owner role`);
  }
  return org;
}

/** Owners answer only to owners: an org admin manages members, but cannot demote or remove an owner. */
async function refuseUnlessOwner(deps: DeployDeps, caller: Caller, org: OrgRow, what: string): Promise<void> {
  if (caller.actor.isAdmin || caller.actor.roles.get(org.id) === "owner") return;
  const { userId, ...by } = refusedBy(caller);
  await audit(deps.db, { userId, action: "members:manage", target: `org:${org.slug}`, sourceIp: caller.sourceIp, result: "denied", data: { ...by, orgId: org.id, reason: "owner_only" } });
  throw new DeckError("forbidden", `permission denied: members:manage in ${org.slug} needs the owner role to ${what}`);
}

export async function listOrgMembers(deps: DeployDeps, caller: Caller, slug: string): Promise<MemberRow[]> {
  const org = await visibleOrg(deps, caller, slug);
  return listMembers(deps.db, org.id);
}

function parseRole(raw: string): Role {
  if (!isRole(raw)) throw new DeckError("validation_failed", `"${raw.slice(0, 20)}" is not a role: owner, admin, member or viewer`);
  return raw;
}

async function userByEmail(deps: DeployDeps, email: string): Promise<{ id: number; email: string }> {
  const u = await findUserByEmail(deps.db, email);
  if (!u) throw new DeckError("not_found", `no user with email ${email.slice(0, 80)}; an admin creates users first`);
  return u;
}

export async function setOrgMember(deps: DeployDeps, caller: Caller, slug: string, email: string, rawRole: string): Promise<MemberRow[]> {
  const org = await orgForManaging(deps, caller, slug, "members:manage");
  const role = parseRole(rawRole);
  const mine = caller.actor.roles.get(org.id);
  if (role === "owner" && mine !== "owner" && !caller.actor.isAdmin) throw new DeckError("forbidden", "permission denied: only an owner can make someone an owner");
  const user = await userByEmail(deps, email);
  const current = (await listMembers(deps.db, org.id)).find((m) => m.userId === user.id);
  if (current?.role === "owner" && role !== "owner") await refuseUnlessOwner(deps, caller, org, "change an owner's role");
  if (current?.role === "owner" && role !== "owner" && (await countOwners(deps.db, org.id)) <= 1) throw new DeckError("conflict", `${email} is the last owner of ${org.slug}; make someone else owner first`);
  await addMember(deps.db, org.id, user.id, role);
  await recordAction(deps, caller, "members:set", `org:${org.slug}`, { orgId: org.id, member: email, role });
  return listMembers(deps.db, org.id);
}

export async function removeOrgMember(deps: DeployDeps, caller: Caller, slug: string, email: string): Promise<void> {
  const org = await orgForManaging(deps, caller, slug, "members:manage");
  const user = await userByEmail(deps, email);
  const current = (await listMembers(deps.db, org.id)).find((m) => m.userId === user.id);
  if (!current) throw new DeckError("not_found", `${email} is not a member of ${org.slug}`);
  if (current.role === "owner") await refuseUnlessOwner(deps, caller, org, "remove an owner");
  if (current.role === "owner" && (await countOwners(deps.db, org.id)) <= 1) throw new DeckError("conflict", `${email} is the last owner of ${org.slug}; make someone else owner first`);
  await removeMember(deps.db, org.id, user.id);
  await recordAction(deps, caller, "members:remove", `org:${org.slug}`, { orgId: org.id, member: email });
}

// ---------- per-app grants ----------
export async function listAppAccess(deps: DeployDeps, caller: Caller, appName: string): Promise<MemberRow[]> {
  const app = await authorizeApp(deps.db, caller, "members:manage", appName);
  return listAppMembers(deps.db, app.id);
}

export async function grantAppAccess(deps: DeployDeps, caller: Caller, appName: string, email: string, rawRole: string): Promise<MemberRow[]> {
  const app = await authorizeApp(deps.db, caller, "members:manage", appName);
  const role = parseRole(rawRole);
  if (role === "owner" && !decide(caller.actor, "app:destroy", { orgId: app.orgId, appId: app.id }).allow) throw new DeckError("forbidden", "permission denied: only an owner can grant the owner role");
  const user = await userByEmail(deps, email);
  await grantAppRole(deps.db, app.id, user.id, role, caller.user.id);
  await recordAction(deps, caller, "access:grant", app.name, { member: email, role });
  return listAppMembers(deps.db, app.id);
}

export async function revokeAppAccess(deps: DeployDeps, caller: Caller, appName: string, email: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "members:manage", appName);
  const user = await userByEmail(deps, email);
  if (!(await revokeAppRole(deps.db, app.id, user.id))) throw new DeckError("not_found", `${email} has no role granted on ${app.name}`);
  await recordAction(deps, caller, "access:revoke", app.name, { member: email });
}

// ---------- SSH keys ----------
export async function listKeys(deps: DeployDeps, caller: Caller): Promise<SshKeyRow[]> {
  return listSshKeys(deps.db, caller.user.id);
}

export async function addKey(deps: DeployDeps, caller: Caller, key: { publicKey: string; fingerprint: string; name: string }): Promise<SshKeyRow> {
  if (await findSshKeyByFingerprint(deps.db, key.fingerprint)) throw new DeckError("conflict", `the key ${key.fingerprint} is already registered`);
  await insertSshKey(deps.db, { userId: caller.user.id, name: key.name.slice(0, 100) || "key", publicKey: key.publicKey, fingerprint: key.fingerprint });
  await recordAction(deps, caller, "keys:add", `user:${caller.user.email}`, { fingerprint: key.fingerprint, name: key.name.slice(0, 100) || "key" });
  return (await listSshKeys(deps.db, caller.user.id)).find((k) => k.fingerprint === key.fingerprint)!;
}

export async function removeKey(deps: DeployDeps, caller: Caller, idOrFingerprint: string): Promise<void> {
  const keys = await listSshKeys(deps.db, caller.user.id);
  const target = keys.find((k) => String(k.id) === idOrFingerprint || k.fingerprint === idOrFingerprint);
  if (!target) throw new DeckError("not_found", `you have no SSH key ${idOrFingerprint.slice(0, 80)} (see keys:list)`);
  if (keys.length === 1) throw new DeckError("conflict", "that is your last SSH key; add another one first so you keep access");
  await deleteSshKey(deps.db, caller.user.id, String(target.id));
  await recordAction(deps, caller, "keys:remove", `user:${caller.user.email}`, { fingerprint: target.fingerprint });
}

// ---------- users ----------
/** Every user, `limit` from `offset` on (platform admins). */
export async function listAllUsers(deps: DeployDeps, caller: Caller, page: { limit: number; offset: number }): Promise<AdminUserRow[]> {
  if (!caller.user.isAdmin) throw new DeckError("forbidden", "permission denied: only platform admins list users");
  return listUsersForAdmin(deps.db, page.limit, page.offset);
}

export async function createUserAsAdmin(deps: DeployDeps, caller: Caller, input: { email: string; name?: string; isAdmin?: boolean; org?: string; role?: string }): Promise<{ id: number; email: string }> {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", "permission denied: only platform admins create users");
  if (await findUserByEmail(deps.db, input.email)) throw new DeckError("conflict", `a user with email ${input.email} already exists`);
  const user = await insertUser(deps.db, { email: input.email, name: input.name, isAdmin: Boolean(input.isAdmin) });
  if (input.org) {
    const org = await findOrgBySlug(deps.db, input.org);
    if (!org) throw new DeckError("not_found", `organisation "${input.org}" does not exist`);
    await addMember(deps.db, org.id, user.id, parseRole(input.role ?? "member"));
  }
  await recordAction(deps, caller, "users:create", `user:${user.email}`, { isAdmin: Boolean(input.isAdmin) });
  return { id: user.id, email: user.email };
}

// ---------- suspending and deleting users (platform admins) ----------
export const SUSPENDED_MESSAGE = "your account is suspended; ask a platform admin";

/**
 * The one check every way in makes once it knows who the user is (sign-in, bearer and personal
 * tokens, SSH, git over HTTP): a suspended user is refused with one line.
 */
export function assertActive(user: Pick<UserRow, "suspendedAt">): void {
  const refusal = refusalFor(user);
  if (refusal) throw new DeckError("forbidden", refusal, { reason: "account_suspended" });
}

/** Why the user may not come in (one line), or null; for the ways in that answer without throwing (SSH, git over HTTP). */
export function refusalFor(user: Pick<UserRow, "suspendedAt">): string | null {
  return user.suspendedAt ? SUSPENDED_MESSAGE : null;
}

async function userForAdministering(deps: DeployDeps, caller: Caller, email: string, verb: string): Promise<UserRow> {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", `permission denied: only platform admins ${verb} users`);
  const user = await findUserRowByEmail(deps.db, email);
  if (!user) throw new DeckError("not_found", `no user with email ${email.slice(0, 80)} (see users:list)`);
  if (user.id === caller.user.id) throw new DeckError("conflict", `you cannot ${verb} your own account; ask another platform admin`);
  return user;
}

export interface SuspendOptions {
  reason?: string;
  /** Also stop the apps the user created (ps:stop); otherwise they keep running. */
  stopApps?: boolean;
  /** Progress lines of the app stops. */
  out?: Out;
}

export interface SuspendResult {
  email: string;
  suspendedAt: string;
  appsStopped: string[];
  /** Apps that could not be stopped, with the reason (the suspension holds regardless). */
  appsNotStopped: { app: string; reason: string }[];
}

/** Suspends a user: every way in refuses them from now on (assertActive); their apps keep running unless `stopApps`. */
export async function suspendUser(deps: DeployDeps, caller: Caller, email: string, options: SuspendOptions = {}): Promise<SuspendResult> {
  const user = await userForAdministering(deps, caller, email, "suspend");
  if (user.isAdmin && !user.suspendedAt && (await countActiveAdmins(deps.db)) <= 1) {
    throw new DeckError("conflict", `${user.email} is the last active platform admin; make another user admin first`);
  }
  const reason = options.reason?.trim().slice(0, 500) || null;
  await setUserSuspension(deps.db, user.id, { by: caller.user.id, reason });
  const appsStopped: string[] = [];
  const appsNotStopped: { app: string; reason: string }[] = [];
  if (options.stopApps) {
    for (const app of await appsCreatedBy(deps.db, user.id)) {
      try {
        await stopApp(deps, caller, app, options.out ?? (() => undefined));
        appsStopped.push(app);
      } catch (e) {
        const message = e instanceof DeckError ? e.message : "deck hit an unexpected error; see the server log";
        deps.log(`suspend ${user.email}: could not stop ${app}: ${(e as Error).message}`);
        appsNotStopped.push({ app, reason: message });
      }
    }
  }
  await recordAction(deps, caller, "users:suspend", `user:${user.email}`, { userId: user.id, reason, stopApps: Boolean(options.stopApps), appsStopped, appsNotStopped: appsNotStopped.map((a) => a.app) });
  const fresh = await findUserRowByEmail(deps.db, user.email);
  return { email: user.email, suspendedAt: fresh?.suspendedAt ?? new Date().toISOString(), appsStopped, appsNotStopped };
}

/** Lets a suspended user in again (their tokens and keys work again; stopped apps stay stopped). */
export async function unsuspendUser(deps: DeployDeps, caller: Caller, email: string): Promise<{ email: string }> {
  const user = await userForAdministering(deps, caller, email, "unsuspend");
  if (!user.suspendedAt) throw new DeckError("conflict", `${user.email} is not suspended`);
  await setUserSuspension(deps.db, user.id, null);
  await recordAction(deps, caller, "users:unsuspend", `user:${user.email}`, { userId: user.id });
  return { email: user.email };
}

/**
 * Deletes a user for good: their memberships, grants, SSH keys, tokens and identities go with them;
 * their apps stay in their organisations and the audit trail keeps their actions (without the user).
 * `confirm` must repeat the email.
 */
export async function deleteUser(deps: DeployDeps, caller: Caller, email: string, confirm: string | undefined): Promise<{ email: string }> {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", "permission denied: only platform admins delete users");
  if (confirm !== email) throw new DeckError("bad_argument", `this deletes ${email.slice(0, 80)}; run again with --confirm ${email.slice(0, 80)}`);
  const user = await userForAdministering(deps, caller, email, "delete");
  if (user.isAdmin && !user.suspendedAt && (await countActiveAdmins(deps.db)) <= 1) {
    throw new DeckError("conflict", `${user.email} is the last active platform admin; make another user admin first`);
  }
  const owned = await orgsSolelyOwnedBy(deps.db, user.id);
  if (owned.length) {
    throw new DeckError("conflict", `${user.email} is the only owner of ${owned.join(", ")}; make another member owner first (PUT /api/v1/orgs/${owned[0]}/members), then delete the user`);
  }
  await deleteUserRow(deps.db, user.id);
  await recordAction(deps, caller, "users:delete", `user:${user.email}`, { userId: user.id });
  return { email: user.email };
}

/** Turns off a user's two-factor authentication (a lost authenticator): they sign in with the password alone and may enrol again. */
export async function resetUserMfa(deps: DeployDeps, caller: Caller, email: string): Promise<{ email: string; mfaWasEnabled: boolean }> {
  const user = await userForAdministering(deps, caller, email, "reset the MFA of");
  const state = await findMfaState(deps.db, user.id);
  await clearMfa(deps.db, user.id);
  const mfaWasEnabled = state?.enabledAt != null;
  await recordAction(deps, caller, "users:mfa:reset", `user:${user.email}`, { userId: user.id, mfaWasEnabled });
  return { email: user.email, mfaWasEnabled };
}

/** Revokes every personal access token and removes every SSH key of a user (a leaked laptop). */
export async function revokeUserCredentials(deps: DeployDeps, caller: Caller, email: string): Promise<{ email: string; tokensRevoked: number; keysRemoved: number }> {
  const user = await userForAdministering(deps, caller, email, "revoke the credentials of");
  const { tokensRevoked, keysRemoved } = await deps.db.transaction(async (tx) => ({
    tokensRevoked: await revokeAllPersonalTokens(tx, user.id),
    keysRemoved: await deleteAllSshKeys(tx, user.id),
  }));
  await recordAction(deps, caller, "users:revoke", `user:${user.email}`, { userId: user.id, tokensRevoked, keysRemoved });
  return { email: user.email, tokensRevoked, keysRemoved };
}

// ---------- audit ----------
export async function appAudit(deps: DeployDeps, caller: Caller, appName: string, limit = 50, before?: number): Promise<AuditRow[]> {
  const app = await authorizeApp(deps.db, caller, "audit:read", appName);
  return auditForTargets(deps.db, [app.name], limit, before);
}

export async function orgAudit(deps: DeployDeps, caller: Caller, slug: string, limit = 50, before?: number): Promise<AuditRow[]> {
  const org = await orgForManaging(deps, caller, slug, "audit:read");
  return auditForOrg(deps.db, org.id, org.slug, limit, before);
}
