import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import {
  deleteApp, findOrgByStripeCustomer, finishBuild, insertApp, insertBuild, insertOrganization, loadBillingAccount, markCapNotice, q, recordUsage,
  saveStripeLink, saveUsageBatch, setSpendCap, usageEntriesOf, usageTotals, type NewUsageEntry,
} from "./index.ts";

const HOUR = 3_600_000;
const hourIso = (ms: number) => new Date(Math.floor(ms / HOUR) * HOUR).toISOString();

for (const backend of await databaseBackends()) {
  describe(`usage ledger and billing accounts (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => t?.cleanup());

    let n = 0;
    const newOrgApp = async () => {
      n += 1;
      const org = await insertOrganization(t.db.pool, { name: `Org ${n}`, slug: `org-${n}` });
      const app = await insertApp(t.db.pool, { name: `app-${n}`, orgId: org.id, createdBy: null });
      return { org, app };
    };
    const allTime = ["2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"] as const;

    it("records each key once: entries recorded again add nothing", async () => {
      const { org, app } = await newOrgApp();
      const entry = (key: string, quantity: number | bigint): NewUsageEntry => ({ key, orgId: org.id, appId: app.id, app: app.name, meter: "build_seconds", quantity, at: new Date("2027-01-05T10:00:00Z") });
      assert.equal(await recordUsage(t.db.pool, [entry("k1", 10), entry("k2", 20)]), 2);
      assert.equal(await recordUsage(t.db.pool, [entry("k1", 10), entry("k2", 999), entry("k3", 2n ** 60n)]), 1, "only k3 is new");
      const entries = await usageEntriesOf(t.db.pool, org.id, ...allTime);
      assert.deepEqual(entries.map((e) => [e.id, e.quantity]), [["k1", 10], ["k2", 20], ["k3", 2n ** 60n]], "the first recording of k2 stands; a quantity past 2^53 stays exact");
      assert.equal(entries[0]!.at, "2027-01-05T10:00:00.000Z", "an ISO instant, as rating takes it");
      await assert.rejects(recordUsage(t.db.pool, [entry("k4", -1)]), RangeError);
      await assert.rejects(recordUsage(t.db.pool, [entry("k5", 1.5)]), RangeError);
    });

    it("a bandwidth batch saved twice is one ledger entry per app and hour", async () => {
      const { org, app } = await newOrgApp();
      const now = Date.now();
      const usage = [
        { app: app.name, hour: hourIso(now - HOUR), requests: 10, bytesIn: 1_000, bytesOut: 50_000 },
        { app: app.name, hour: hourIso(now), requests: 3, bytesIn: 200, bytesOut: 7_000 },
        { app: "no-such-app", hour: hourIso(now), requests: 1, bytesIn: 1, bytesOut: 1 },
      ];
      const batch = { id: `batch-${app.id}`, usage };
      assert.notEqual(await saveUsageBatch(t.db.pool, batch), null);
      assert.equal(await saveUsageBatch(t.db.pool, batch), null, "the batch is recognised");
      const entries = await usageEntriesOf(t.db.pool, org.id, ...allTime);
      assert.deepEqual(
        entries.map((e) => ({ id: e.id, meter: e.meter, app: e.app, quantity: e.quantity, at: e.at })),
        usage.slice(0, 2).map((u) => ({ id: `bw:${batch.id}:${app.id}:${u.hour}`, meter: "bandwidth_bytes", app: app.name, quantity: u.bytesIn + u.bytesOut, at: u.hour })),
      );
    });

    it("a finished build has exactly one entry with its wall-clock seconds, failed builds included", async () => {
      const { org, app } = await newOrgApp();
      const ok = await insertBuild(t.db.pool, app.id, "a".repeat(40));
      const failed = await insertBuild(t.db.pool, app.id, "b".repeat(40));
      await t.db.pool.query(q`UPDATE builds SET started_at = now() - interval '95.51 seconds' WHERE id = ${ok.id}`);
      await t.db.pool.query(q`UPDATE builds SET started_at = now() - interval '12.01 seconds' WHERE id = ${failed.id}`);
      await finishBuild(t.db.pool, ok.id, { ok: true, buildpack: "node", slugPath: "/tmp/slug", sizeBytes: 10 });
      await finishBuild(t.db.pool, failed.id, { ok: false });
      const seconds = await t.db.pool.any(q`SELECT id, round(extract(epoch FROM finished_at - started_at))::int4 AS s, finished_at FROM builds WHERE app_id = ${app.id} ORDER BY id`);
      const entries = await usageEntriesOf(t.db.pool, org.id, ...allTime);
      assert.deepEqual(
        entries.map((e) => ({ id: e.id, meter: e.meter, app: e.app, quantity: e.quantity, at: e.at })).sort((a, b) => a.id.localeCompare(b.id)),
        seconds.map((b) => ({ id: `build:${b.id}`, meter: "build_seconds", app: app.name, quantity: Number(b.s), at: String(b.finished_at) })).sort((a, b) => a.id.localeCompare(b.id)),
      );
      assert.deepEqual(seconds.map((b) => Number(b.s)), [96, 12], "rounded to the nearest second");
    });

    it("sums usage per meter and app over the range asked", async () => {
      const { org, app } = await newOrgApp();
      const other = await insertApp(t.db.pool, { name: `app-${n}-b`, orgId: org.id, createdBy: null });
      const from = Date.parse("2027-03-01T00:00:00Z");
      const to = Date.parse("2027-04-01T00:00:00Z");
      const entries: NewUsageEntry[] = [];
      let i = 0;
      for (const a of [app, other, null]) {
        for (const meter of ["build_seconds", "bandwidth_bytes", "storage_byte_hours"] as const) {
          // Some inside the range, one just before and one at its (excluded) end.
          for (const at of [from - 1000, from, from + 5 * HOUR, to - 1, to]) {
            entries.push({ key: `t${(i += 1)}`, orgId: org.id, appId: a?.id ?? null, app: a?.name ?? null, meter, quantity: i * 1_000_003, at: new Date(at) });
          }
        }
      }
      await recordUsage(t.db.pool, entries);
      const expected = new Map<string, { quantity: bigint; entries: number }>();
      for (const e of entries) {
        const at = (e.at as Date).getTime();
        if (at < from || at >= to) continue;
        const k = `${e.meter} ${e.app}`;
        const cur = expected.get(k) ?? { quantity: 0n, entries: 0 };
        expected.set(k, { quantity: cur.quantity + BigInt(e.quantity), entries: cur.entries + 1 });
      }
      const totals = await usageTotals(t.db.pool, org.id, new Date(from), new Date(to));
      assert.deepEqual(new Map(totals.map((r) => [`${r.meter} ${r.app}`, { quantity: r.quantity, entries: r.entries }])), expected);
      assert.equal(totals.length, 9);
    });

    it("an app destroyed keeps its usage in the org's ledger under its name", async () => {
      const { org, app } = await newOrgApp();
      const build = await insertBuild(t.db.pool, app.id, "c".repeat(40));
      await finishBuild(t.db.pool, build.id, { ok: true });
      await saveUsageBatch(t.db.pool, { id: `gone-${app.id}`, usage: [{ app: app.name, hour: hourIso(Date.now()), requests: 1, bytesIn: 10, bytesOut: 20 }] });
      const before = await usageTotals(t.db.pool, org.id, ...allTime);
      await deleteApp(t.db.pool, app.id);
      assert.equal(await t.db.pool.oneFirst(q`SELECT count(*)::int4 FROM builds WHERE app_id = ${app.id}`), 0, "its builds went with it");
      const afterDelete = await usageTotals(t.db.pool, org.id, ...allTime);
      assert.deepEqual(afterDelete, before);
      assert.deepEqual(afterDelete.map((r) => [r.meter, r.app]), [["bandwidth_bytes", app.name], ["build_seconds", app.name]]);
    });

    it("an org without an account has no cap, no notices and no Stripe link; a cap is set and removed", async () => {
      const org = await insertOrganization(t.db.pool, { name: "Capped", slug: "capped" });
      assert.deepEqual(await loadBillingAccount(t.db.pool, org.id), {
        orgId: org.id, spendCapCents: null, capNotices: {}, stripeCustomerId: null, stripeSubscriptionId: null, stripeStatus: null, stripeStatusAt: null,
      });
      await setSpendCap(t.db.pool, org.id, 50_00);
      assert.equal((await loadBillingAccount(t.db.pool, org.id)).spendCapCents, 50_00);
      await setSpendCap(t.db.pool, org.id, null);
      assert.equal((await loadBillingAccount(t.db.pool, org.id)).spendCapCents, null);
      await assert.rejects(setSpendCap(t.db.pool, org.id, -1), RangeError);
    });

    it("marks each cap threshold once per period, also when two servers mark it at once", async () => {
      const org = await insertOrganization(t.db.pool, { name: "Notices", slug: "notices" });
      const both = await Promise.all([markCapNotice(t.db.pool, org.id, "2027-01", 80), markCapNotice(t.db.pool, org.id, "2027-01", 80)]);
      assert.deepEqual(both.sort(), [false, true]);
      assert.equal(await markCapNotice(t.db.pool, org.id, "2027-01", 100), true);
      assert.equal(await markCapNotice(t.db.pool, org.id, "2027-02", 80), true, "a new period starts afresh");
      assert.equal(await markCapNotice(t.db.pool, org.id, "2027-01", 100), false);
      assert.deepEqual((await loadBillingAccount(t.db.pool, org.id)).capNotices, { "2027-01": [80, 100], "2027-02": [80] });
      await setSpendCap(t.db.pool, org.id, 1000);
      assert.deepEqual((await loadBillingAccount(t.db.pool, org.id)).capNotices, { "2027-01": [80, 100], "2027-02": [80] }, "setting the cap keeps the notices");
    });

    it("links an org to its Stripe customer; an older subscription status does not replace a newer one", async () => {
      const org = await insertOrganization(t.db.pool, { name: "Striped", slug: "striped" });
      assert.equal(await findOrgByStripeCustomer(t.db.pool, "cus_123"), null);
      await saveStripeLink(t.db.pool, org.id, { customerId: "cus_123" });
      assert.equal(await findOrgByStripeCustomer(t.db.pool, "cus_123"), org.id);
      await saveStripeLink(t.db.pool, org.id, { subscriptionId: "sub_1", status: "active", statusAt: "2027-01-10T00:00:00Z" });
      await saveStripeLink(t.db.pool, org.id, { status: "incomplete", statusAt: "2027-01-09T00:00:00Z" });
      let account = await loadBillingAccount(t.db.pool, org.id);
      assert.deepEqual([account.stripeCustomerId, account.stripeSubscriptionId, account.stripeStatus, account.stripeStatusAt], ["cus_123", "sub_1", "active", "2027-01-10T00:00:00.000Z"]);
      await saveStripeLink(t.db.pool, org.id, { status: "past_due", statusAt: new Date("2027-02-01T00:00:00Z") });
      account = await loadBillingAccount(t.db.pool, org.id);
      assert.deepEqual([account.stripeCustomerId, account.stripeStatus, account.stripeStatusAt], ["cus_123", "past_due", "2027-02-01T00:00:00.000Z"]);
    });
  });
}
