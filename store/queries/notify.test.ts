import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Notice } from "../../core/index.ts";
import { configureSecrets } from "../secret-box.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { claimNotices, enqueueNotice, insertNotifyChannel, insertOrganization, markNoticeSent } from "./index.ts";

const notice = (orgId: number, org: string, n: number): Notice => ({
  key: `crash_loop:web:${org}:${n}`, status: "firing", orgId, org, app: "web", host: "deck-test", rule: "crash_loop", value: "4 restarts in 5 min",
  summary: `web of ${org} is crash-looping`, startsAt: new Date().toISOString(), command: "ssh deck@deck-test metrics web --since 1h",
});

/** The outbox is shared by every org: one org's flood of notices must not hold up another's. */
for (const backend of await databaseBackends()) {
  describe(`notification outbox fairness (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
      // Channel targets are sealed with deck's key: a key of this test's own.
      configureSecrets({ dataDir: t.dataDir, masterKey: Buffer.alloc(32, 7).toString("base64") });
    });
    after(async () => t?.cleanup());

    it("gives each org at most its share of senders in flight, so a later notice of a quiet org goes out before a flood drains", async () => {
      const db = t.db.pool;
      const loud = await insertOrganization(db, { name: "Loud", slug: "loud" });
      const quiet = await insertOrganization(db, { name: "Quiet", slug: "quiet" });
      for (const o of [loud, quiet]) await insertNotifyChannel(db, { orgId: o.id, kind: "webhook", target: "https://hooks.example.com/x", targetDisplay: "https://hooks.example.com/…", createdBy: null });
      for (let i = 0; i < 40; i++) await enqueueNotice(db, notice(loud.id, "loud", i));
      await enqueueNotice(db, notice(quiet.id, "quiet", 0));

      const orgOf = (c: { notice: Notice }) => c.notice.org;
      const first = await claimNotices(db, { limit: 8, leaseSeconds: 60, perOrg: 2 });
      assert.deepEqual(first.map(orgOf).sort(), ["loud", "loud", "quiet"], "the quiet org's notice is taken with the flood's first");
      assert.deepEqual(first.filter((c) => c.notice.org === "loud").map((c) => c.notice.key).sort(), ["crash_loop:web:loud:0", "crash_loop:web:loud:1"], "oldest first");
      // While the loud org's two are in flight (another sender, say), it gets no more.
      assert.deepEqual(await claimNotices(db, { limit: 8, leaseSeconds: 60, perOrg: 2 }), []);
      for (const c of first) assert.equal(await markNoticeSent(db, c), true);
      const next = await claimNotices(db, { limit: 8, leaseSeconds: 60, perOrg: 2 });
      assert.deepEqual(next.map((c) => c.notice.key).sort(), ["crash_loop:web:loud:2", "crash_loop:web:loud:3"]);
    });
  });
}
