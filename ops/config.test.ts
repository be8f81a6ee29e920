import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeployDeps } from "../deploy/index.ts";
import { addMember, insertApp, insertOrganization, insertUser, saveConfigVars, type UserRow } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { callerFor } from "./access.ts";
import { configValue, showConfig } from "./config.ts";

const SECRET = "sk_live_0123456789abcdef";

// One rule for SSH's `config:show --reveal` and the API's `?reveal=true`: both call showConfig.
for (const backend of await databaseBackends()) {
  describe(`config values in clear (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let deps: DeployDeps;
    const users: Record<"admin" | "member" | "viewer", UserRow> = {} as never;
    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      const owner = await insertUser(t.db.pool, { email: "owner@example.com", isAdmin: false });
      const org = await insertOrganization(t.db.pool, { name: "o", slug: "o" });
      await addMember(t.db.pool, org.id, owner.id, "owner");
      for (const role of ["admin", "member", "viewer"] as const) {
        users[role] = await insertUser(t.db.pool, { email: `${role}@example.com`, isAdmin: false });
        await addMember(t.db.pool, org.id, users[role].id, role);
      }
      const app = await insertApp(t.db.pool, { name: "shop", orgId: org.id, createdBy: owner.id });
      await saveConfigVars(t.db.pool, app.id, { API_KEY: SECRET });
      deps = { db: t.db.pool } as unknown as DeployDeps;
    });
    after(async () => {
      await t?.cleanup();
    });

    const as = (role: keyof typeof users) => callerFor(t.db.pool, users[role], "ssh");
    const refusal = (p: Promise<unknown>) => p.then(() => assert.fail("accepted"), (e: { code?: string; message?: string }) => e);

    it("masks every value unless revealed, for anyone who may read config", async () => {
      const masked = await showConfig(deps, await as("member"), "shop");
      assert.deepEqual(Object.keys(masked), ["API_KEY"]);
      assert.notEqual(masked.API_KEY, SECRET);
      assert.ok(!masked.API_KEY.includes(SECRET.slice(4)), masked.API_KEY);
    });

    it("reveals values only to those who may change config", async () => {
      assert.deepEqual(await showConfig(deps, await as("admin"), "shop", { reveal: true }), { API_KEY: SECRET });
      const member = await refusal(showConfig(deps, await as("member"), "shop", { reveal: true }));
      assert.equal(member.code, "forbidden");
      assert.match(member.message ?? "", /^permission denied: config:set on shop /);
      // A viewer may not read config at all: refused by config:get before reveal is considered.
      const viewer = await refusal(showConfig(deps, await as("viewer"), "shop", { reveal: true }));
      assert.equal(viewer.code, "forbidden");
      assert.match(viewer.message ?? "", /^permission denied: config:get on shop /);
    });

    it("config:get reads one value in clear and says when it is not set", async () => {
      assert.equal(await configValue(deps, await as("member"), "shop", "API_KEY"), SECRET);
      const missing = await refusal(configValue(deps, await as("member"), "shop", "NOPE"));
      assert.deepEqual([missing.code, missing.message], ["not_found", "NOPE is not set on shop"]);
    });
  });
}
