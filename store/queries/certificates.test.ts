import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { listenForNotifications } from "../notification-listener.ts";
import {
  addDomain, CERTS_CHANNEL, deleteApp, findCertificate, insertApp, insertOrganization, listDomainsWithoutCertificate, listDueAcmeCertificates, q,
  saveAcmeFailure, saveIssuedCertificate, startAcmeAttempt,
} from "./index.ts";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

for (const backend of await databaseBackends()) {
  describe(`certificate rows (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let orgId: number;
    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      orgId = (await insertOrganization(t.db.pool, { name: "o", slug: "o" })).id;
    });
    after(async () => {
      await t?.cleanup();
    });
    const app = (name: string) => insertApp(t.db.pool, { name, orgId, createdBy: null });
    const issue = (domain: string, appId: number, notAfter: Date) =>
      saveIssuedCertificate(t.db.pool, { domain, appId, source: "acme", certPem: "chain", keyPem: "key", serial: "01", notAfter });
    /** What the hourly check asks at `now`, as CertManager.checkDue asks it (renew within 30 days, retry after 6 hours). */
    const dueAt = async (now: Date) =>
      (await listDueAcmeCertificates(t.db.pool, { renewBefore: new Date(now.getTime() + 30 * DAY), retryBefore: new Date(now.getTime() - 6 * HOUR) })).map((c) => c.domain);

    it("announces deleted certificates to router nodes, also those apps:destroy takes with the app", async () => {
      const gone = await app("gone");
      await addDomain(t.db.pool, gone.id, "gone.example.com");
      await issue("gone.example.com", gone.id, new Date(Date.now() + 60 * DAY));
      const heard: string[] = [];
      let connected!: () => void;
      const ready = new Promise<void>((r) => (connected = r));
      const listener = listenForNotifications({ url: t.db.url, channels: [CERTS_CHANNEL], onNotification: (_c, payload) => void heard.push(payload), onConnected: () => connected() });
      try {
        await ready;
        await deleteApp(t.db.pool, gone.id);
        for (let i = 0; i < 100 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(heard, ["gone.example.com"]);
        assert.equal(await findCertificate(t.db.pool, "gone.example.com"), null);
      } finally {
        await listener.close();
      }
    });

    it("tries a failed renewal again after the same 6 hours as a failed first order, not at every hourly check", async () => {
      const shop = await app("shop");
      for (const d of ["renew.example.com", "first.example.com", "fine.example.com"]) await addDomain(t.db.pool, shop.id, d);
      await issue("renew.example.com", shop.id, new Date(Date.now() + 10 * DAY));
      await issue("fine.example.com", shop.id, new Date(Date.now() + 10 * DAY));
      assert.deepEqual(await dueAt(new Date()), ["fine.example.com", "renew.example.com"]);
      // Both orders fail now.
      for (const d of ["renew.example.com", "first.example.com"]) {
        assert.equal(await startAcmeAttempt(t.db.pool, d, shop.id), true);
        await saveAcmeFailure(t.db.pool, d, shop.id, "connection refused");
      }
      assert.equal((await findCertificate(t.db.pool, "renew.example.com"))?.status, "issued");
      assert.deepEqual(await dueAt(new Date(Date.now() + HOUR)), ["fine.example.com"]);
      assert.deepEqual(await dueAt(new Date(Date.now() + 5 * HOUR)), ["fine.example.com"]);
      assert.deepEqual(await dueAt(new Date(Date.now() + 7 * HOUR)), ["fine.example.com", "first.example.com", "renew.example.com"]);
      await t.db.pool.query(q`DELETE FROM apps WHERE id = ${shop.id}`);
    });

    it("records a failure whose row went away meanwhile while the domain is still the app's; never for another app", async () => {
      const a = await app("a");
      const b = await app("b");
      await addDomain(t.db.pool, a.id, "readd.example.com");
      // domains:remove and domains:add again took the row of the order under way.
      await saveAcmeFailure(t.db.pool, "readd.example.com", a.id, "connection refused");
      const row = await findCertificate(t.db.pool, "readd.example.com");
      assert.equal(row?.status, "failed");
      assert.equal(row?.error, "connection refused");
      assert.equal(row?.appId, a.id);
      assert.ok(row?.lastAttemptAt);

      // The domain moved to b, whose order now runs: a's late failure leaves b's row alone.
      await addDomain(t.db.pool, b.id, "moved.example.com");
      assert.equal(await startAcmeAttempt(t.db.pool, "moved.example.com", b.id), true);
      await saveAcmeFailure(t.db.pool, "moved.example.com", a.id, "too late");
      assert.equal((await findCertificate(t.db.pool, "moved.example.com"))?.status, "pending");
      // And no row appears for a domain that is nobody's (removed for good).
      await saveAcmeFailure(t.db.pool, "removed.example.com", a.id, "too late");
      assert.equal(await findCertificate(t.db.pool, "removed.example.com"), null);
    });

    it("lists custom domains that have no certificate row at all", async () => {
      const c = await app("c");
      await addDomain(t.db.pool, c.id, "late.example.com");
      await addDomain(t.db.pool, c.id, "late.own.test");
      const missing = await listDomainsWithoutCertificate(t.db.pool);
      assert.deepEqual(missing.filter((m) => m.appId === c.id), [{ domain: "late.example.com", appId: c.id }, { domain: "late.own.test", appId: c.id }]);
      assert.ok(!missing.some((m) => m.domain === "readd.example.com" || m.domain === "moved.example.com"));
    });
  });
}
