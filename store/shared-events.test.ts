import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { SharedEvents } from "./shared-events.ts";

type Event = { type: string; app: string; data: Record<string, unknown> };

/** Two deck servers on one database: what happens on one reaches the event streams of both, once. */
for (const backend of await databaseBackends()) {
  describe(`events shared by deck servers (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => t?.cleanup());

    it("hands an event to this server's listeners at once and to every other server's, never twice, long texts cut", async () => {
      const logs: string[] = [];
      const [a, b] = [new SharedEvents<Event>({ db: t.db.pool, url: t.db.url, log: (l) => logs.push(l) }), new SharedEvents<Event>({ db: t.db.pool, url: t.db.url, log: (l) => logs.push(l) })];
      const heardA: Event[] = [];
      const heardB: Event[] = [];
      a.subscribe((e) => heardA.push(e));
      b.subscribe((e) => heardB.push(e));
      a.start();
      b.start();
      try {
        await Promise.all([a.ready, b.ready]);
        a.emit({ type: "deploy", app: "shop", data: { to: "succeeded", message: "x".repeat(2000) } });
        b.emit({ type: "alert", app: "blog", data: { state: "firing" } });
        for (let i = 0; i < 250 && (heardA.length < 2 || heardB.length < 2); i++) await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(heardA.map((e) => `${e.type}:${e.app}`), ["deploy:shop", "alert:blog"]);
        assert.deepEqual(heardB.map((e) => `${e.type}:${e.app}`), ["alert:blog", "deploy:shop"]);
        assert.equal((heardA[0]!.data.message as string).length, 2000, "this server's own listeners get the event as it is");
        assert.equal((heardB[1]!.data.message as string).length, 501, "other servers get long texts cut");
        assert.deepEqual(logs, []);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  });
}
