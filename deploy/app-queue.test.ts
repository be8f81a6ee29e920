import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { insertApp, insertDeployment, insertOrganization, insertUser, q, type AppRow } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { AppQueue } from "./app-queue.ts";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(10);
  }
}

for (const backend of await databaseBackends()) {
  describe(`the apps' lines of work (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let a: AppRow;
    let b: AppRow;
    const queues: AppQueue[] = [];
    const queue = (name: string, mode: "wait" | "refuse" = "wait", prefix = "host:/data:") => {
      const made = new AppQueue({ db: t.db.pool, holder: { prefix, holder: `${prefix}${name}` }, mode, pollMs: 50 });
      queues.push(made);
      return made;
    };
    before(async () => {
      t = await openTestDatabase(backend);
      const user = await insertUser(t.db.pool, { email: "q@example.com", isAdmin: true });
      const org = await insertOrganization(t.db.pool, { name: "Q", slug: "q" });
      a = await insertApp(t.db.pool, { name: "qa", orgId: org.id, createdBy: user.id });
      b = await insertApp(t.db.pool, { name: "qb", orgId: org.id, createdBy: user.id });
    });
    after(async () => {
      for (const made of queues) made.stop();
      await t?.cleanup();
    });

    it("runs work for one app in order, reporting positions, and other apps at once", async () => {
      const line = queue("one");
      const events: string[] = [];
      const gates = new Map<string, () => void>();
      const job = (app: AppRow, name: string) => line.run(app, "push", (pos) => events.push(`${name} waits #${pos}`), async () => {
        events.push(`${name} start`);
        await new Promise<void>((r) => gates.set(name, r));
        events.push(`${name} end`);
      });
      const a1 = job(a, "a1");
      await until("a1 to start", () => events.includes("a1 start"));
      const a2 = job(a, "a2");
      await until("a2 to wait", () => events.includes("a2 waits #1"));
      const a3 = job(a, "a3");
      const b1 = job(b, "b1");
      await until("a3 to wait and b1 to start", () => events.includes("a3 waits #2") && events.includes("b1 start"));
      assert.equal(events.filter((e) => e.endsWith("start")).length, 2, "only one piece of work per app runs");
      assert.equal(await line.busy(a.id), true);
      gates.get("a1")!();
      gates.get("b1")!();
      // a2's turn: a3 hears its place move up.
      await until("a2 to start and a3 to move up", () => gates.has("a2") && events.includes("a3 waits #1"));
      gates.get("a2")!();
      await until("a3 to start", () => gates.has("a3"));
      gates.get("a3")!();
      await Promise.all([a1, a2, a3, b1]);
      assert.deepEqual(events.filter((e) => e.startsWith("a") && !e.includes("waits")), ["a1 start", "a1 end", "a2 start", "a2 end", "a3 start", "a3 end"]);
      assert.equal(await line.busy(a.id), false);
    });

    it("is one line for two servers on one database", async () => {
      const first = queue("server-1");
      const second = queue("server-2");
      let release!: () => void;
      const events: string[] = [];
      const running = first.run(a, "push", () => undefined, async () => {
        events.push("first start");
        await new Promise<void>((r) => (release = r));
        events.push("first end");
      });
      await until("the first server's work to start", () => events.includes("first start"));
      const waiting = second.run(a, "config", (pos) => events.push(`second waits #${pos}`), async () => void events.push("second start"));
      await until("the second server's work to wait", () => events.includes("second waits #1"));
      assert.ok(!events.includes("second start"));
      release();
      await Promise.all([running, waiting]);
      assert.deepEqual(events, ["first start", "second waits #1", "first end", "second start"]);
    });

    it("drops what an earlier run of the server left in line, and work of a server that stopped refreshing it", async () => {
      // An earlier run on this host left a running entry (it was killed mid-deploy) …
      await t.db.pool.query(q`INSERT INTO app_queue (app_id, kind, holder, running) VALUES (${a.id}, 'push', 'host:/data:old-run', true)`);
      // … and a server elsewhere stopped long ago with an entry in b's line.
      const cutOff = await insertDeployment(t.db.pool, { appId: b.id, kind: "scale", createdBy: null });
      await t.db.pool.query(q`INSERT INTO app_queue (app_id, kind, holder, deployment_id, heartbeat_at) VALUES (${b.id}, 'scale', 'elsewhere:/x:1', ${cutOff.id}, now() - interval '5 minutes')`);
      const restarted = queue("new-run");
      const dropped = await restarted.dropAbandoned();
      assert.deepEqual(dropped.map((e) => e.holder).sort(), ["elsewhere:/x:1", "host:/data:old-run"]);
      const ended = await t.db.pool.one(q`SELECT status, error_code FROM deployments WHERE id = ${cutOff.id}`);
      assert.deepEqual([ended.status, ended.error_code], ["interrupted", "interrupted"], "the stopped server's deployment does not stay queued");
      let ran = false;
      await restarted.run(a, "push", () => assert.fail("nothing is ahead any more"), async () => void (ran = true));
      assert.equal(ran, true);
    });

    it("leaves the line when the caller gives up while waiting", async () => {
      const line = queue("cancel");
      let release!: () => void;
      const running = line.run(a, "push", () => undefined, () => new Promise<void>((r) => (release = r)));
      await until("the first entry to run", async () => (await line.busy(a.id)) && release !== undefined);
      const gaveUp = new AbortController();
      let position = 0;
      const waiting = line.run(a, "push", (pos) => (position = pos), async () => assert.fail("a cancelled entry never runs"), gaveUp.signal);
      await until("the second entry to wait", () => position === 1);
      gaveUp.abort(new Error("the pusher disconnected"));
      await assert.rejects(waiting, /the pusher disconnected/);
      assert.equal(Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM app_queue WHERE app_id = ${a.id}`)), 1, "only the running entry is left");
      release();
      await running;
    });

    it("refuses instead of waiting in refuse mode", async () => {
      const line = queue("refuser", "refuse");
      let release!: () => void;
      const first = line.run(a, "push", () => undefined, () => new Promise<void>((r) => (release = r)));
      await until("the first deploy to run", () => release !== undefined);
      await assert.rejects(line.run(a, "push", () => undefined, async () => undefined), /another deploy of qa is in progress/);
      release();
      await first;
    });
  });
}
