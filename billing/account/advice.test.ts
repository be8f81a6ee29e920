import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { insertApp, insertOrganization, insertPlanChange, insertUser, q, recordUsage, type Db } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { adviseOrg } from "./advice.ts";

/** `billing:advice` findings from a real PostgreSQL holding an org's apps, traffic and ledger. */
for (const backend of await databaseBackends()) {
  describe(`billing advice (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => t?.cleanup());

    /** An app with a live release, `web` processes, created 30 days before `now`, and `hourly` requests in each of the last 7 days' hours. */
    async function liveApp(db: Db, orgId: number, userId: number, name: string, web: number, hourly: number, now: Date): Promise<number> {
      const app = await insertApp(db, { name, orgId, createdBy: userId });
      const dep = await db.oneFirst(q`INSERT INTO deployments (app_id, kind, status) VALUES (${app.id}, 'push', 'succeeded') RETURNING id`);
      await db.query(q`UPDATE apps SET live_deployment_id = ${dep}, formation = ${JSON.stringify({ web })}::jsonb,
        created_at = ${new Date(now.getTime() - 30 * 86_400_000).toISOString()}::timestamptz WHERE id = ${app.id}`);
      if (hourly > 0) {
        await db.query(q`INSERT INTO bandwidth_usage (app_id, app_name, org_id, hour, requests, bytes_in, bytes_out)
          SELECT ${app.id}, ${name}, ${orgId}, h, ${hourly}, 0, 0 FROM generate_series(${new Date(now.getTime() - 6 * 86_400_000).toISOString()}::timestamptz,
            ${now.toISOString()}::timestamptz, interval '1 hour') h`);
      }
      return app.id;
    }

    it("names idle apps, scale above need and a cheaper plan, each with what to run", async () => {
      const db = t.db.pool;
      const now = new Date("2027-05-10T12:00:00Z");
      const user = await insertUser(db, { email: "o@waste.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Waste", slug: "waste" });
      await db.query(q`UPDATE organizations SET created_at = '2027-01-01T00:00:00Z' WHERE id = ${org.id}`);
      await liveApp(db, org.id, user.id, "forgotten", 2, 0, now);
      await liveApp(db, org.id, user.id, "busy", 3, 36_000, now); // 10 requests/s at its busiest: one web process is enough
      await liveApp(db, org.id, user.id, "packed", 4, 288_000, now); // 80 requests/s: four are needed
      // On Business since January; its builds would fit Pro's 1,000 minutes: Pro costs $20 a month, not $99.
      await insertPlanChange(db, { orgId: org.id, plan: "business", startsAt: new Date("2027-01-01T00:00:00Z"), createdBy: user.id });
      for (const m of ["02", "03", "04"]) {
        await recordUsage(db, [{ key: `build:${m}`, orgId: org.id, appId: null, app: "busy", meter: "build_seconds", quantity: 300 * 60, at: `2027-${m}-10T00:00:00Z` }]);
      }
      const advice = await adviseOrg(db, org.id, "waste", now);
      assert.deepEqual(advice.findings.map((f) => [f.kind, f.text, f.command]), [
        ["over_scaled", "busy runs 3 web processes; its busiest hour in 7 days averaged 10.00 requests/s, which 1 handles", "ps:scale busy web=1"],
        ["idle_app", "forgotten has had no requests in 7 days but runs 2 processes", "ps:stop forgotten (or apps:destroy forgotten --confirm forgotten)"],
        ["cheaper_plan", "on Pro the last 3 month(s) (2027-02, 2027-03, 2027-04) would have cost $60.00 instead of $297.00", "billing:plan waste pro"],
      ]);
    });

    it("says nothing when the org uses what it pays for", async () => {
      const db = t.db.pool;
      const now = new Date("2027-05-10T12:00:00Z");
      const user = await insertUser(db, { email: "o@lean.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Tidy", slug: "tidy" });
      await db.query(q`UPDATE organizations SET created_at = '2027-01-01T00:00:00Z' WHERE id = ${org.id}`);
      await liveApp(db, org.id, user.id, "steady", 1, 3600, now);
      assert.deepEqual((await adviseOrg(db, org.id, "tidy", now)).findings, []);
    });
  });
}
