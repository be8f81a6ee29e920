import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { addMember, findUserById, insertOrganization, insertSshKey, insertUser, q, createApiToken, findUserByApiToken, type UserRow } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { callerFor, type Caller } from "./access.ts";
import { assertActive, deleteUser, listAllUsers, revokeUserCredentials, suspendUser, unsuspendUser } from "./accounts.ts";

/** Rejects with a DeckError of `code` whose message matches `message`. */
async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isDeckError(e), `expected a DeckError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
}

for (const backend of await databaseBackends()) {
  describe(`administering users (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let admin: UserRow;
    let asAdmin: Caller;
    const deps = (): DeployDeps => ({ db: t.db.pool, log: () => undefined } as unknown as DeployDeps);

    before(async () => {
      t = await openTestDatabase(backend);
      admin = await insertUser(t.db.pool, { email: "root@example.com", isAdmin: true });
      asAdmin = await callerFor(t.db.pool, admin, "cli");
    });
    after(async () => {
      await t?.cleanup();
    });

    it("suspends and unsuspends, with the reason shown in the user list and checked by assertActive", async () => {
      const u = await insertUser(t.db.pool, { email: "sam@example.com", isAdmin: false });
      assert.doesNotThrow(() => assertActive(u));
      await suspendUser(deps(), asAdmin, "sam@example.com", { reason: "left the team" });
      const suspended = (await findUserById(t.db.pool, u.id))!;
      assert.throws(() => assertActive(suspended), /your account is suspended; ask a platform admin/);
      const listed = (await listAllUsers(deps(), asAdmin, { limit: 50, offset: 0 })).find((r) => r.email === "sam@example.com")!;
      assert.equal(listed.suspendReason, "left the team");
      assert.equal(listed.suspendedBy, "root@example.com");
      assert.ok(listed.suspendedAt);
      await unsuspendUser(deps(), asAdmin, "sam@example.com");
      const active = (await findUserById(t.db.pool, u.id))!;
      assert.doesNotThrow(() => assertActive(active));
      await rejectsWith(unsuspendUser(deps(), asAdmin, "sam@example.com"), "conflict", /is not suspended/);
    });

    it("refuses callers who are not platform admins, and an admin acting on themselves", async () => {
      const u = await insertUser(t.db.pool, { email: "kim@example.com", isAdmin: false });
      const asKim = await callerFor(t.db.pool, u, "cli");
      await rejectsWith(suspendUser(deps(), asKim, "root@example.com"), "forbidden", /only platform admins/);
      await rejectsWith(deleteUser(deps(), asKim, "root@example.com", "root@example.com"), "forbidden", /only platform admins/);
      await rejectsWith(suspendUser(deps(), asAdmin, "root@example.com"), "conflict", /your own account/);
      await rejectsWith(deleteUser(deps(), asAdmin, "root@example.com", "root@example.com"), "conflict", /your own account/);
    });

    it("keeps the last active platform admin", async () => {
      const second = await insertUser(t.db.pool, { email: "ops@example.com", isAdmin: true });
      // root suspended by ops leaves ops the only active admin: ops cannot then be suspended by anyone.
      const asOps = await callerFor(t.db.pool, second, "cli");
      await suspendUser(deps(), asOps, "root@example.com");
      const third = await insertUser(t.db.pool, { email: "helper@example.com", isAdmin: true });
      await t.db.pool.query(q`UPDATE users SET suspended_at = now() WHERE id = ${third.id}`);
      const asHelper = await callerFor(t.db.pool, { ...third, suspendedAt: null }, "cli");
      await rejectsWith(suspendUser(deps(), asHelper, "ops@example.com"), "conflict", /last active platform admin/);
      await rejectsWith(deleteUser(deps(), asHelper, "ops@example.com", "ops@example.com"), "conflict", /last active platform admin/);
      await unsuspendUser(deps(), asOps, "root@example.com");
    });

    it("deletes only with the email repeated, and not while the user is an org's only owner", async () => {
      const u = await insertUser(t.db.pool, { email: "lee@example.com", isAdmin: false });
      const org = await insertOrganization(t.db.pool, { name: "lee's", slug: "lees" });
      await addMember(t.db.pool, org.id, u.id, "owner");
      await rejectsWith(deleteUser(deps(), asAdmin, "lee@example.com", "lee@example.co"), "bad_argument", /^this deletes lee@example\.com; run again with --confirm lee@example\.com$/);
      await rejectsWith(deleteUser(deps(), asAdmin, "lee@example.com", "lee@example.com"), "conflict", /only owner of lees/);
      await addMember(t.db.pool, org.id, admin.id, "owner");
      await deleteUser(deps(), asAdmin, "lee@example.com", "lee@example.com");
      assert.equal(await findUserById(t.db.pool, u.id), null);
      const members = await t.db.pool.any(q`SELECT user_id FROM organization_members WHERE org_id = ${org.id}`);
      assert.deepEqual(members.map((m) => Number(m.user_id)), [admin.id]);
    });

    it("revokes every token and removes every key of a user", async () => {
      const u = await insertUser(t.db.pool, { email: "ash@example.com", isAdmin: false });
      const token = await createApiToken(t.db.pool, u.id, "ci", ["read"]);
      await createApiToken(t.db.pool, u.id, "laptop", ["admin"]);
      await insertSshKey(t.db.pool, { userId: u.id, name: "k", publicKey: "ssh-ed25519 AAAA", fingerprint: "SHA256:ash-test" });
      assert.ok(await findUserByApiToken(t.db.pool, token));
      assert.deepEqual(await revokeUserCredentials(deps(), asAdmin, "ash@example.com"), { email: "ash@example.com", tokensRevoked: 2, keysRemoved: 1 });
      assert.equal(await findUserByApiToken(t.db.pool, token), null);
      assert.deepEqual(await revokeUserCredentials(deps(), asAdmin, "ash@example.com"), { email: "ash@example.com", tokensRevoked: 0, keysRemoved: 0 });
    });
  });
}
