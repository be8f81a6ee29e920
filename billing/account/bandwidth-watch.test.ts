import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { configureSecrets } from "../../store/secret-box.ts";
import { findApp, insertApp, insertNotifyChannel, insertOrganization, insertPlanChange, insertUser, q, recordUsage } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { BandwidthWatch } from "./bandwidth-watch.ts";

/** A Free org past its bandwidth: its apps are throttled (and it hears so once), until it upgrades or the month ends. */
for (const backend of await databaseBackends()) {
  describe(`Free bandwidth throttle (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
      configureSecrets({ dataDir: t.dataDir, masterKey: Buffer.alloc(32, 5).toString("base64") });
    });
    after(async () => t?.cleanup());

    it("throttles every app of a Free org past 100 GB, sends their routes again, notifies once, and lets go after an upgrade and in a new month", async () => {
      const db = t.db.pool;
      const user = await insertUser(db, { email: "o@heavy.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Heavy", slug: "heavy" });
      const other = await insertOrganization(db, { name: "Light", slug: "light" });
      await db.query(q`UPDATE organizations SET created_at = '2027-03-01T00:00:00Z' WHERE id IN (${org.id}, ${other.id})`);
      const site = await insertApp(db, { name: "site", orgId: org.id, createdBy: user.id });
      await insertApp(db, { name: "api", orgId: org.id, createdBy: user.id });
      await insertApp(db, { name: "calm", orgId: other.id, createdBy: user.id });
      await insertNotifyChannel(db, { orgId: org.id, kind: "webhook", target: "https://hooks.example.com/t", targetDisplay: "https://hooks.example.com/…", createdBy: user.id });
      const applied: string[] = [];
      const watch = new BandwidthWatch({
        db, log: () => {}, intervalMs: 3_600_000, throttleBytesPerSecond: 262_144, sshHost: "deck.example.com", sshPort: 2222,
        applyRoute: async (app) => void applied.push(app),
      });
      const throttled = async () => (await db.any(q`SELECT name, throttle_bytes_per_second AS t FROM apps ORDER BY name`)).map((r) => `${r.name}:${r.t ?? "-"}`);

      await recordUsage(db, [{ key: "bw:1", orgId: org.id, appId: site.id, app: "site", meter: "bandwidth_bytes", quantity: 99e9, at: "2027-03-05T10:00:00Z" }]);
      await watch.round(new Date("2027-03-06T00:00:00Z"));
      assert.deepEqual(await throttled(), ["api:-", "calm:-", "site:-"], "under 100 GB: nothing");

      await recordUsage(db, [{ key: "bw:2", orgId: org.id, appId: site.id, app: "site", meter: "bandwidth_bytes", quantity: 1e9, at: "2027-03-05T11:00:00Z" }]);
      await watch.round(new Date("2027-03-06T00:00:00Z"));
      await watch.round(new Date("2027-03-06T00:05:00Z"));
      assert.deepEqual(await throttled(), ["api:262144", "calm:-", "site:262144"], "every app of the org, none of another's");
      assert.deepEqual(applied.sort(), ["api", "site"], "their routes were sent once");
      assert.equal((await findApp(db, "site"))!.router.throttleBytesPerSecond, 262_144);
      const notices = await db.anyFirst(q`SELECT payload->>'summary' FROM notify_outbox ORDER BY id`);
      assert.deepEqual(notices, ["heavy used the 100 GB of bandwidth its plan includes this month; its apps are throttled to 256 KiB/s until the month ends or an owner upgrades (billing:plan heavy pro)"]);

      await insertPlanChange(db, { orgId: org.id, plan: "pro", startsAt: new Date("2027-03-07T00:00:00Z"), createdBy: user.id });
      await watch.round(new Date("2027-03-07T00:01:00Z"));
      assert.deepEqual(await throttled(), ["api:-", "calm:-", "site:-"], "on Pro, bandwidth beyond is billed instead");

      await insertPlanChange(db, { orgId: org.id, plan: "free", startsAt: new Date("2027-04-01T00:00:00Z"), createdBy: user.id });
      await watch.round(new Date("2027-04-02T00:00:00Z"));
      assert.deepEqual(await throttled(), ["api:-", "calm:-", "site:-"], "a new month starts with its own allowance");
    });
  });
}
