import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import {
  addDomain, insertApp, insertBuild, insertOrganization, q, tryLedgerJobLock, usageEntriesOf, usageTotals, type AppRow,
} from "../../store/queries/index.ts";
import { makeDomainKey, LEDGER_JOB_LOCKS, LedgerJobs, listStorageDirs, makeStorageKey } from "./index.ts";

const HOUR = 3_600_000;
const DAY = 86_400_000;
const allTime = ["2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"] as const;

for (const backend of await databaseBackends()) {
  describe(`usage ledger jobs (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let dataDir: string;
    let orgId: number;
    before(async () => {
      t = await openTestDatabase(backend);
      dataDir = await mkdtemp(join(tmpdir(), "deck-ledger-"));
      orgId = (await insertOrganization(t.db.pool, { name: "Acme", slug: "acme" })).id;
    });
    after(async () => {
      await t?.cleanup();
      await rm(dataDir, { recursive: true, force: true });
    });

    const logs: string[] = [];
    const images = new Map<string, number | Error>();
    const newJobs = () => new LedgerJobs({
      db: t.db.pool, dataDir, log: (line) => logs.push(line),
      imageBytes: async (app) => {
        const v = images.get(app);
        if (v instanceof Error) throw v;
        return v ?? null;
      },
    });
    const newApp = async (name: string, createdAt: Date): Promise<AppRow> => {
      const app = await insertApp(t.db.pool, { name, orgId, createdBy: null });
      await t.db.pool.query(q`UPDATE apps SET created_at = ${createdAt.toISOString()}::timestamptz WHERE id = ${app.id}`);
      return app;
    };
    /** Adds a pack to the app's repository and a build's artifact; returns the app's bytes on disk now. */
    const sizes = new Map<string, number>();
    let files = 0;
    const grow = async (app: string, repoBytes: number, slugBytes: number): Promise<number> => {
      const [repo, artifacts] = listStorageDirs(dataDir, app);
      const n = (files += 1);
      await mkdir(join(repo!, "objects"), { recursive: true });
      await mkdir(join(artifacts!, "slugs", String(n)), { recursive: true });
      await writeFile(join(repo!, "objects", `pack-${n}`), Buffer.alloc(repoBytes));
      await writeFile(join(artifacts!, "slugs", String(n), "app.tar"), Buffer.alloc(slugBytes));
      sizes.set(app, (sizes.get(app) ?? 0) + repoBytes + slugBytes);
      return sizes.get(app)!;
    };
    const entriesOf = async (prefix: string) => (await usageEntriesOf(t.db.pool, orgId, ...allTime)).filter((e) => e.id.startsWith(prefix));

    it("the sweeper records a build finished without a ledger entry, once; a build still running has none", async () => {
      const app = await newApp("swept", new Date());
      const old = await insertBuild(t.db.pool, app.id, "a".repeat(40));
      const running = await insertBuild(t.db.pool, app.id, "b".repeat(40));
      // Finished the way deck finished builds before the ledger existed.
      await t.db.pool.query(q`UPDATE builds SET status = 'succeeded', started_at = now() - interval '42 seconds', finished_at = now() WHERE id = ${old.id}`);
      const jobs = newJobs();
      await jobs.tick();
      await jobs.tick();
      const entries = await entriesOf("build:");
      assert.deepEqual(entries.map((e) => [e.id, e.meter, e.app, e.quantity]), [[`build:${old.id}`, "build_seconds", "swept", 42]]);
      assert.ok(!entries.some((e) => e.id === `build:${running.id}`));
    });

    it("measures each app's storage once per clock hour: a second run in the hour adds nothing", async () => {
      const h0 = Date.parse("2027-01-10T10:00:00Z");
      const web = await newApp("web", new Date(h0 + 10 * 60_000));
      const worker = await newApp("worker", new Date(h0 + 12 * 60_000));
      const webSize = await grow("web", 10_000, 2_500);
      images.set("web", 70_000);
      const jobs = newJobs();
      await jobs.tick(new Date(h0 + 20 * 60_000));
      await grow("web", 1, 1);
      await jobs.tick(new Date(h0 + 50 * 60_000));
      for (const [app, bytes] of [[web, webSize + 70_000], [worker, 0]] as const) {
        assert.deepEqual((await entriesOf(`storage:${app.id}:`)).map((e) => [e.id, e.meter, e.app, e.quantity, e.at]), [
          // The app's first hour is dated from its creation.
          [makeStorageKey(app.id, h0), "storage_byte_hours", app.name, bytes, app.id === web.id ? new Date(h0 + 10 * 60_000).toISOString() : new Date(h0 + 12 * 60_000).toISOString()],
        ]);
      }
    });

    it("fills the hours missed while deck was down with the size it measures now", async () => {
      const h0 = Date.parse("2027-01-12T10:00:00Z");
      const api = await newApp("api", new Date(h0));
      const first = await grow("api", 4_000, 1_000);
      await newJobs().tick(new Date(h0 + 20 * 60_000));
      const now = await grow("api", 300, 0);
      // Down from 10:20 until 14:05: the hours 11, 12 and 13 were never measured.
      await newJobs().tick(new Date(h0 + 4 * HOUR + 5 * 60_000));
      const entries = await entriesOf(`storage:${api.id}:`);
      assert.deepEqual(entries.map((e) => [e.id, e.quantity, e.at]), [
        [makeStorageKey(api.id, h0), first, new Date(h0).toISOString()],
        ...[1, 2, 3, 4].map((i) => [makeStorageKey(api.id, h0 + i * HOUR), now, new Date(h0 + i * HOUR).toISOString()]),
      ]);
    });

    it("fills a gap at most 7 days back and never before the app existed", async () => {
      const now = Date.parse("2027-01-20T09:30:00Z");
      const old = await newApp("old", new Date(now - 30 * DAY));
      const young = await newApp("young", new Date(now - 2 * HOUR - 40 * 60_000));
      await newJobs().tick(new Date(now));
      const oldEntries = await entriesOf(`storage:${old.id}:`);
      assert.equal(oldEntries.length, 7 * 24 + 1);
      assert.equal(oldEntries[0]!.id, makeStorageKey(old.id, now - 30 * 60_000 - 7 * DAY));
      assert.deepEqual((await entriesOf(`storage:${young.id}:`)).map((e) => e.at), [
        new Date(now - 2 * HOUR - 40 * 60_000).toISOString(), // created 06:50: its first hour counts from then
        ...[150, 90, 30].map((m) => new Date(now - m * 60_000).toISOString()), // 07:00, 08:00, 09:00
      ]);
    });

    it("says once that an app cannot be measured, and fills its hours once it can", async () => {
      const h0 = Date.parse("2027-02-01T00:00:00Z");
      const app = await newApp("docker-app", new Date(h0));
      images.set("docker-app", new Error("the Docker engine does not answer"));
      logs.length = 0;
      const jobs = newJobs();
      await jobs.tick(new Date(h0 + 5 * 60_000));
      await jobs.tick(new Date(h0 + HOUR + 5 * 60_000));
      assert.equal(logs.filter((l) => l.includes("docker-app")).length, 1, logs.join("\n"));
      assert.match(logs.find((l) => l.includes("docker-app"))!, /the Docker engine does not answer/);
      assert.deepEqual(await entriesOf(`storage:${app.id}:`), []);
      images.set("docker-app", 5_000);
      await jobs.tick(new Date(h0 + 2 * HOUR + 5 * 60_000));
      assert.deepEqual((await entriesOf(`storage:${app.id}:`)).map((e) => [e.id, e.quantity]), [0, 1, 2].map((i) => [makeStorageKey(app.id, h0 + i * HOUR), 5_000]));
      assert.equal(logs.filter((l) => l.includes("docker-app")).length, 2, "and says when it works again");
    });

    it("counts a custom domain once per UTC day, from the day it was first seen, filling days missed", async () => {
      const d0 = Date.parse("2027-03-01T00:00:00Z");
      const app = await newApp("shop", new Date(d0 - 10 * DAY));
      await addDomain(t.db.pool, app.id, "shop.example.com");
      const id = (await t.db.pool.oneFirst(q`SELECT id FROM domains WHERE domain = 'shop.example.com'`)) as number;
      const jobs = newJobs();
      const firstSeen = new Date(d0 + 13 * HOUR);
      await jobs.tick(firstSeen);
      await jobs.tick(new Date(d0 + 20 * HOUR));
      await jobs.tick(new Date(d0 + DAY + HOUR));
      await jobs.tick(new Date(d0 + 4 * DAY + 2 * HOUR));
      const entries = await entriesOf(`domain:${id}:`);
      assert.deepEqual(
        entries.map((e) => [e.id, e.meter, e.app, e.quantity, e.at]),
        [0, 1, 2, 3, 4].map((i) => [makeDomainKey(id, d0 + i * DAY), "domain_days", "shop", 1, i === 0 ? firstSeen.toISOString() : new Date(d0 + i * DAY).toISOString()]),
      );
      assert.equal(entries[0]!.id, `domain:${id}:2027-03-01`);
      const totals = await usageTotals(t.db.pool, orgId, new Date(d0), new Date(d0 + 31 * DAY));
      assert.equal(totals.find((r) => r.meter === "domain_days" && r.app === "shop")?.quantity, 5n);
    });

    it("runs a job on one deck server at a time: while another holds the job's lock, this one skips it", async () => {
      const h0 = Date.parse("2027-04-01T00:00:00Z");
      const app = await newApp("locked-out", new Date(h0));
      // Another server's run of the storage job, holding its lock until told to finish.
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      let taken!: (ok: boolean) => void;
      const lockTaken = new Promise<boolean>((resolve) => (taken = resolve));
      const other = t.db.pool.transaction(async (tx) => {
        taken(await tryLedgerJobLock(tx, LEDGER_JOB_LOCKS.storage));
        await finished;
      });
      assert.equal(await lockTaken, true);
      await newJobs().tick(new Date(h0 + 5 * 60_000));
      assert.deepEqual(await entriesOf(`storage:${app.id}:`), []);
      finish();
      await other;
      await newJobs().tick(new Date(h0 + 6 * 60_000));
      assert.equal((await entriesOf(`storage:${app.id}:`)).length, 1);
    });
  });
}
