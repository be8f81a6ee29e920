/**
 * Bandwidth for billing: the router's counts reach `bandwidth_usage` exactly once, in the hour they
 * were counted in, across lost answers, a stopped router, and a destroyed app.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, mock } from "node:test";
import type { DatabasePool } from "slonik";
import { deleteApp, insertApp, insertOrganization, q } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { Metering } from "./metering.ts";
import { UsageSaver } from "./usage-saver.ts";

describe("Metering batches", () => {
  it("hands out the same batch until it is acknowledged, and new counts in the next one", () => {
    const m = new Metering();
    m.record("shop", 200, 100, 1000, 0.01);
    const first = m.takeBatch();
    assert.ok(first.id);
    m.record("shop", 200, 10, 20, 0.01);
    assert.deepEqual(m.takeBatch(), first, "not acknowledged: handed out again, unchanged");
    assert.equal(m.acknowledge("someone-else"), false);
    assert.equal(m.acknowledge(first.id!), true);
    const second = m.takeBatch();
    assert.notEqual(second.id, first.id);
    assert.deepEqual(second.usage.map((u) => [u.app, u.requests, u.bytesIn, u.bytesOut]), [["shop", 1, 10, 20]]);
    m.acknowledge(second.id!);
    assert.deepEqual(m.takeBatch(), { id: null, usage: [] });
  });

  it("keeps each count in the clock hour it happened in", (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: Date.parse("2026-11-26T09:59:59.500Z") });
    const m = new Metering();
    m.record("shop", 200, 1, 1, 0.01);
    t.mock.timers.tick(1000);
    m.record("shop", 200, 2, 2, 0.01);
    m.record("blog", 500, 3, 3, 0.01);
    const rows = m.takeBatch().usage.map((u) => [u.hour, u.app, u.requests]).sort();
    assert.deepEqual(rows, [
      ["2026-11-26T09:00:00.000Z", "shop", 1],
      ["2026-11-26T10:00:00.000Z", "blog", 1],
      ["2026-11-26T10:00:00.000Z", "shop", 1],
    ]);
  });

  it("a stopping router leaves its unsaved counts in a file the next one takes back, the held batch under its id", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deck-metering-"));
    try {
      const file = join(dir, "metering.json");
      const old = new Metering();
      old.record("shop", 200, 5, 50, 0.01);
      const held = old.takeBatch();
      old.record("shop", 200, 7, 70, 0.01);
      assert.equal(await old.saveUnsaved(file), 2);
      assert.equal((await stat(file)).mode & 0o777, 0o600);

      const next = new Metering();
      assert.deepEqual(await next.loadUnsaved(file), { entries: 2 });
      await assert.rejects(stat(file), /ENOENT/, "taken back once");
      assert.deepEqual(next.takeBatch(), held);
      next.acknowledge(held.id!);
      assert.deepEqual(next.takeBatch().usage.map((u) => [u.app, u.requests, u.bytesIn]), [["shop", 1, 7]]);

      // A file with an entry that does not read as counts: the others are still taken back.
      await writeFile(file, JSON.stringify({ held: null, pending: [
        { app: "shop", hour: "2026-11-26T10:00:00.000Z", requests: 1, bytesIn: 10, bytesOut: 20 },
        { app: "shop", hour: "2026-11-26T10:00:00.000Z", requests: 1, bytesIn: -5, bytesOut: 20 },
      ] }));
      const partly = new Metering();
      assert.deepEqual(await partly.loadUnsaved(file), { entries: 1, skipped: 1 });
      assert.deepEqual(partly.takeBatch().usage.map((u) => [u.requests, u.bytesIn]), [[1, 10]]);

      const empty = new Metering();
      assert.equal(await empty.saveUnsaved(file), 0);
      await assert.rejects(stat(file), /ENOENT/, "nothing unsaved: no file");
      assert.deepEqual(await empty.loadUnsaved(file), { entries: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const backends = await databaseBackends();
// One backend is enough: nothing here depends on how PostgreSQL is run.
const backend = backends[backends.length - 1];

describe(`saving usage (${backend.name} PostgreSQL)`, () => {
  let t: TestDatabase;
  let orgId: number;
  before(async () => {
    t = await openTestDatabase(backend);
    orgId = (await insertOrganization(t.db.pool, { name: "Usage", slug: "usage" })).id;
  });
  after(() => t?.cleanup());

  const usageOf = (name: string) =>
    t.db.pool.any(q`SELECT app_id, hour, requests, bytes_in, bytes_out FROM bandwidth_usage WHERE app_name = ${name} ORDER BY hour`);

  it("saves a batch once, even when the router never heard it was saved", async () => {
    await insertApp(t.db.pool, { name: "twice", orgId, createdBy: null });
    const metering = new Metering();
    metering.record("twice", 200, 100, 1000, 0.01);
    metering.record("twice", 404, 10, 20, 0.01);
    let lost = 0;
    const source = {
      takeBatch: () => metering.takeBatch(),
      // The first acknowledgement is lost on its way back to the router.
      acknowledge: (id: string) => {
        if (lost++ === 0) throw new Error("the router did not answer");
        return metering.acknowledge(id);
      },
    };
    const lines: string[] = [];
    const saver = new UsageSaver(() => t.db.pool, source, (l) => lines.push(l));
    await saver.save();
    await saver.save();
    await saver.save();
    const rows = await usageOf("twice");
    assert.deepEqual(rows.map((r) => [Number(r.requests), Number(r.bytes_in), Number(r.bytes_out)]), [[2, 110, 1020]]);
    assert.match(lines.join("\n"), /could not tell the router its counts are saved .*the router did not answer/);
    assert.deepEqual(metering.takeBatch(), { id: null, usage: [] }, "acknowledged in the end");
  });

  it("keeps the counts with the router while the database is away, and saves them in their own hour", async (ctx) => {
    await insertApp(t.db.pool, { name: "later", orgId, createdBy: null });
    ctx.mock.timers.enable({ apis: ["Date"], now: Date.parse("2026-11-26T07:30:00Z") });
    const metering = new Metering();
    metering.record("later", 200, 1, 2, 0.01);
    let up = false;
    const lines: string[] = [];
    const away = { transaction: () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")) } as unknown as DatabasePool;
    const saver = new UsageSaver(() => (up ? t.db.pool : away), metering, (l) => lines.push(l));
    await saver.save();
    ctx.mock.timers.tick(3 * 3_600_000);
    metering.record("later", 200, 1, 2, 0.01);
    mock.timers.reset();
    up = true;
    await saver.save();
    await saver.save();
    assert.match(lines[0], /could not save usage \(the router keeps the counts for the next try\): connect ECONNREFUSED/);
    const rows = await usageOf("later");
    assert.deepEqual(rows.map((r) => [new Date(r.hour as number).toISOString(), Number(r.requests)]), [
      ["2026-11-26T07:00:00.000Z", 1],
      ["2026-11-26T10:00:00.000Z", 1],
    ]);
  });

  it("a router started by an older deck hands its counts over once: a failed save keeps them in memory for the next", async () => {
    await insertApp(t.db.pool, { name: "legacy", orgId, createdBy: null });
    const handed = [{ app: "legacy", hour: "2026-11-26T12:00:00.000Z", requests: 4, bytesIn: 40, bytesOut: 400 }];
    const source = { takeBatch: () => ({ id: null, usage: handed.splice(0) }), acknowledge: () => undefined };
    let up = false;
    const away = { transaction: () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")) } as unknown as DatabasePool;
    const lines: string[] = [];
    const saver = new UsageSaver(() => (up ? t.db.pool : away), source, (l) => lines.push(l));
    await saver.save();
    up = true;
    await saver.save();
    await saver.save();
    const rows = await usageOf("legacy");
    assert.deepEqual(rows.map((r) => [Number(r.requests), Number(r.bytes_in)]), [[4, 40]]);
    assert.match(lines.join("\n"), /started by an older deck; restart it/);
    assert.match(lines.join("\n"), /could not save usage \(kept in memory for the next try\)/);
  });

  it("keeps a destroyed app's usage, no longer tied to any app", async () => {
    const app = await insertApp(t.db.pool, { name: "gone", orgId, createdBy: null });
    const metering = new Metering();
    metering.record("gone", 200, 1, 2, 0.01);
    await new UsageSaver(() => t.db.pool, metering, () => {}).save();
    await deleteApp(t.db.pool, app.id);
    const rows = await t.db.pool.any(q`SELECT app_id, org_id, requests FROM bandwidth_usage WHERE app_name = 'gone'`);
    assert.deepEqual(rows.map((r) => [r.app_id, Number(r.org_id), Number(r.requests)]), [[null, orgId, 1]]);
  });
});
