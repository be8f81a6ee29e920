import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { q } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { BuildSlots } from "./build-slots.ts";

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const backend of await databaseBackends()) {
  describe(`build slots shared by every server (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    const made: BuildSlots[] = [];
    const slots = (name: string, limit = 2) => {
      const s = new BuildSlots({ db: t.db.pool, holder: { prefix: "host:/d:", holder: `host:/d:${name}` }, limit, pollMs: 50 });
      made.push(s);
      return s;
    };
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => {
      for (const s of made) s.stop();
      await t?.cleanup();
    });

    it("runs at most the limit across two servers, the rest in arrival order with their position", async () => {
      const one = slots("one");
      const two = slots("two");
      const never = new AbortController().signal;
      const events: string[] = [];
      const releases = new Map<string, () => Promise<void>>();
      const take = (server: BuildSlots, name: string) => server.acquire(null, (pos) => events.push(`${name} waits #${pos}`), never).then((slot) => {
        events.push(`${name} builds`);
        releases.set(name, slot!.release);
      });
      const a = take(one, "a");
      await until("a to build", () => releases.has("a"));
      const b = take(two, "b");
      await until("b to build", () => releases.has("b"));
      const c = take(one, "c");
      await until("c to wait", () => events.includes("c waits #1"));
      const d = take(two, "d");
      await until("d to wait", () => events.includes("d waits #2"));
      assert.equal(releases.size, 2, "two builds at once, whichever server took them");
      await releases.get("b")!();
      await until("c to build", () => releases.has("c"));
      await until("d to move up", () => events.includes("d waits #1"));
      assert.equal(releases.has("d"), false);
      await releases.get("a")!();
      await Promise.all([a, b, c, d]);
      assert.deepEqual(events.filter((e) => e.endsWith("builds")), ["a builds", "b builds", "c builds", "d builds"]);
      for (const r of releases.values()) await r();
      assert.equal(Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM build_queue`)), 0);
    });

    it("gives up its place when the push is cancelled in line, and drops what a killed earlier run held", async () => {
      await t.db.pool.query(q`INSERT INTO build_queue (holder, running) VALUES ('host:/d:killed', true), ('host:/d:killed', true)`);
      const restarted = slots("restarted");
      const cancel = new AbortController();
      const waiting = restarted.acquire(null, () => cancel.abort(), cancel.signal);
      assert.equal(await waiting, null, "cancelled while both slots were held by the killed run");
      await restarted.dropAbandoned();
      const slot = await restarted.acquire(null, () => assert.fail("no one holds a slot any more"), new AbortController().signal);
      assert.equal(slot?.where, "here");
      await slot.release();
      assert.equal(Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM build_queue`)), 0);
    });
  });
}
