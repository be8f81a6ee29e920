import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { configureSecrets } from "../../store/secret-box.ts";
import {
  insertApp, insertNotifyChannel, insertOrganization, insertPlanChange, insertUser, q, recordUsage, setSpendCap, type AppRow,
} from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { admitBuild } from "./quota.ts";
import { CapWatch } from "./cap-watch.ts";

/**
 * Spend caps and the Free plan's build minutes against a real PostgreSQL: what an org's owners hear
 * (notices at 80% and 100%, once each) and what stops (builds, with one line saying why).
 */
for (const backend of await databaseBackends()) {
  describe(`spend caps and build quotas (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
      configureSecrets({ dataDir: t.dataDir, masterKey: Buffer.alloc(32, 9).toString("base64") });
    });
    after(async () => t?.cleanup());

    const outbox = async (orgId: number) => (await t.db.pool.any(q`SELECT o.notice_key FROM notify_outbox o JOIN notify_channels c ON c.id = o.channel_id
      WHERE c.org_id = ${orgId} ORDER BY o.id`)).map((r) => String(r.notice_key));

    it("notifies at 80% and at 100% of the cap once each, and stops builds at 100% with one line", async () => {
      const db = t.db.pool;
      const user = await insertUser(db, { email: "o@capped.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Capped", slug: "capped" });
      await db.query(q`UPDATE organizations SET created_at = '2027-03-01T00:00:00Z' WHERE id = ${org.id}`);
      const app: AppRow = await insertApp(db, { name: "spender", orgId: org.id, createdBy: user.id });
      await insertNotifyChannel(db, { orgId: org.id, kind: "webhook", target: "https://hooks.example.com/cap", targetDisplay: "https://hooks.example.com/…", createdBy: user.id });
      // Pro all March: 1,000 build minutes included, then $0.01 a minute.
      await insertPlanChange(db, { orgId: org.id, plan: "pro", startsAt: new Date("2027-03-01T00:00:00Z"), createdBy: user.id });
      await setSpendCap(db, org.id, 3000); // $30.00
      const watch = new CapWatch({ db, log: () => {}, intervalMs: 3_600_000, sshHost: "deck.example.com", sshPort: 2222 });

      // On 11 March, a third of the month's fee has accrued ($6.45) and 1,500 minutes were built (500 over: $5.00): $11.45, under 80%.
      await recordUsage(db, [{ key: "build:a", orgId: org.id, appId: app.id, app: app.name, meter: "build_seconds", quantity: 1500 * 60, at: "2027-03-10T12:00:00Z" }]);
      await watch.round(new Date("2027-03-11T00:00:00Z"));
      assert.deepEqual(await outbox(org.id), []);
      assert.equal(await admitBuild(db, app, new Date("2027-03-11T00:00:00Z")), null);

      // 1,800 more minutes: $11.45 + $18.00 = $29.45, past 80% ($24) but under the cap.
      await recordUsage(db, [{ key: "build:b", orgId: org.id, appId: app.id, app: app.name, meter: "build_seconds", quantity: 1800 * 60, at: "2027-03-10T18:00:00Z" }]);
      await watch.round(new Date("2027-03-11T00:00:00Z"));
      await watch.round(new Date("2027-03-11T00:00:00Z"));
      assert.deepEqual(await outbox(org.id), ["billing:cap:capped:2027-03:80"], "one notice at 80%, however often it is looked at");
      assert.equal(await admitBuild(db, app, new Date("2027-03-11T00:00:00Z")), null, "builds go on under the cap");

      // A day later the fee accrued past the cap.
      await watch.round(new Date("2027-03-12T00:00:00Z"));
      assert.deepEqual(await outbox(org.id), ["billing:cap:capped:2027-03:80", "billing:cap:capped:2027-03:100"]);
      const [payload] = await db.anyFirst(q`SELECT payload FROM notify_outbox WHERE notice_key = 'billing:cap:capped:2027-03:100'`);
      assert.match((payload as { summary: string }).summary, /^capped has used 100% of its \$30\.00 monthly spend cap \(\$30\.\d\d so far\); builds stop/);
      assert.equal((payload as { command: string }).command, "ssh deck@deck.example.com -p 2222 billing:usage capped");
      const refused = await admitBuild(db, app, new Date("2027-03-12T00:00:00Z"));
      assert.match(refused ?? "", /^capped has reached its spend cap: \$30\.\d\d of \$30\.00 this month, so builds stop until next month; an owner can raise it with billing:cap capped AMOUNT$/);
      // The next month starts afresh.
      assert.equal(await admitBuild(db, app, new Date("2027-04-02T00:00:00Z")), null);
    });

    it("stops a Free org's builds at its build minutes, not a paid org's", async () => {
      const db = t.db.pool;
      const user = await insertUser(db, { email: "o@free.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Free", slug: "freebie" });
      await db.query(q`UPDATE organizations SET created_at = '2027-03-01T00:00:00Z' WHERE id = ${org.id}`);
      const app = await insertApp(db, { name: "tiny", orgId: org.id, createdBy: user.id });
      await recordUsage(db, [{ key: "build:f1", orgId: org.id, appId: app.id, app: app.name, meter: "build_seconds", quantity: 99 * 60 + 59, at: "2027-03-05T00:00:00Z" }]);
      assert.equal(await admitBuild(db, app, new Date("2027-03-06T00:00:00Z")), null, "one second left");
      await recordUsage(db, [{ key: "build:f2", orgId: org.id, appId: app.id, app: app.name, meter: "build_seconds", quantity: 1, at: "2027-03-05T01:00:00Z" }]);
      assert.equal(await admitBuild(db, app, new Date("2027-03-06T00:00:00Z")),
        "freebie has used 100.0 of the 100 build minutes its Free plan includes this month; an owner can upgrade with billing:plan freebie pro (billing:plans lists the plans)");
      await insertPlanChange(db, { orgId: org.id, plan: "pro", startsAt: new Date("2027-03-06T00:00:00Z"), createdBy: user.id });
      assert.equal(await admitBuild(db, app, new Date("2027-03-06T01:00:00Z")), null, "on Pro the minutes beyond are billed instead");
    });
  });
}
