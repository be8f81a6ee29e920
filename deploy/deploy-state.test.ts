import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { insertApp, insertDeployment, insertOrganization, insertUser, q } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { ACTIVE_STATES, canMove, DeployEvents, FINAL_STATES, transition, type DeployEvent, type DeployState } from "./deploy-state.ts";

describe("the deployment state diagram", () => {
  it("runs a push from queued to succeeded through every step, and lets each step before the switch end in failure", () => {
    const path: DeployState[] = ["queued", "building", "releasing", "starting", "checking", "switching", "draining", "succeeded"];
    for (let i = 1; i < path.length; i++) assert.ok(canMove(path[i - 1], path[i]), `${path[i - 1]} → ${path[i]}`);
    for (const s of ["queued", "building", "releasing", "starting", "checking", "switching"] as const) assert.ok(canMove(s, "failed"), `${s} → failed`);
  });

  it("never leaves a final state, never goes back, and cannot fail once the release is live", () => {
    for (const end of FINAL_STATES) for (const to of [...ACTIVE_STATES, ...FINAL_STATES]) assert.equal(canMove(end, to), false, `${end} → ${to}`);
    assert.equal(canMove("starting", "building"), false);
    assert.equal(canMove("draining", "failed"), false, "a release that went live is not reported as failed");
    assert.equal(canMove("switching", "cancelled"), false, "the switch is not cancellable");
  });
});

for (const backend of await databaseBackends()) {
  describe(`transition() (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let appId: number;
    let userId: number;
    before(async () => {
      t = await openTestDatabase(backend);
      const user = await insertUser(t.db.pool, { email: "s@example.com", isAdmin: true });
      const org = await insertOrganization(t.db.pool, { name: "S", slug: "s" });
      appId = (await insertApp(t.db.pool, { name: "stately", orgId: org.id, createdBy: user.id })).id;
      userId = user.id;
    });
    after(async () => t?.cleanup());

    it("writes the row, records a failure's code and message, and tells every subscriber", async () => {
      const events = new DeployEvents();
      const heard: DeployEvent[] = [];
      const unsubscribe = events.subscribe((e) => heard.push(e));
      const row = await insertDeployment(t.db.pool, { appId, kind: "push", commitSha: "a".repeat(40), createdBy: userId });
      const d = { id: row.id, app: "stately", kind: "push" as const, state: "queued" as DeployState };
      await transition(t.db.pool, events, d, "building");
      await transition(t.db.pool, events, d, "failed", { code: "build_failed", message: "npm ci failed with exit code 1" });
      unsubscribe();
      const saved = await t.db.pool.one(q`SELECT status, error, error_code, finished_at FROM deployments WHERE id = ${row.id}`);
      assert.deepEqual([saved.status, saved.error, saved.error_code, saved.finished_at !== null], ["failed", "npm ci failed with exit code 1", "build_failed", true]);
      assert.deepEqual(heard.map((e) => `${e.from}→${e.to}${e.code ? ` ${e.code}` : ""}`), ["queued→building", "building→failed build_failed"]);
      assert.equal(d.state, "failed");
    });

    it("refuses a move the diagram does not allow, and a move from a state the row has already left", async () => {
      const events = new DeployEvents();
      const row = await insertDeployment(t.db.pool, { appId, kind: "config", createdBy: userId });
      await assert.rejects(transition(t.db.pool, events, { id: row.id, app: "stately", kind: "config", state: "queued" }, "draining"), /cannot move from queued to draining/);
      // Someone else (a restarted server's reconcile, say) ended it meanwhile.
      await t.db.pool.query(q`UPDATE deployments SET status = 'interrupted' WHERE id = ${row.id}`);
      await assert.rejects(transition(t.db.pool, events, { id: row.id, app: "stately", kind: "config", state: "queued" }, "starting"), /no longer queued/);
      assert.equal(await t.db.pool.oneFirst(q`SELECT status FROM deployments WHERE id = ${row.id}`), "interrupted");
    });
  });
}
