/**
 * ACME orders in the background (CertManager) against a real database: the CA is a fake whose answers
 * the test gives, or a server that never answers, in front of deck's real acme-client.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it, test } from "node:test";
import type { DeckConfig } from "../config/index.ts";
import type { RouterControl, ServedCertificate } from "../core/index.ts";
import { addDomain, deleteCertificate, findCertificate, insertApp, insertOrganization, removeDomain } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { acmeEligible, AcmeIssuer, CertManager, type CertificateIssuer, type ObtainedCertificate } from "./cert-manager.ts";

test("deck orders certificates only for public custom domains, and never with DECK_ACME=off", () => {
  const config = { acme: "on", domain: "apps.example.com" } as DeckConfig;
  assert.equal(acmeEligible(config, "www.shop.com"), true);
  assert.equal(acmeEligible(config, "shop.apps.example.com"), false);
  for (const d of ["shop.localhost", "shop.test", "x.local", "a.example", "localhost"]) assert.equal(acmeEligible(config, d), false, d);
  assert.equal(acmeEligible({ ...config, acme: "off" }, "www.shop.com"), false);
});

interface Call {
  domain: string;
  issue(): void;
  fail(reason: string): void;
}

/** A CA whose every order waits until the test answers it (or is answered at once with `answerAtOnce`). */
class FakeIssuer implements CertificateIssuer {
  readonly calls: Call[] = [];
  answerAtOnce = false;

  obtain(domain: string): Promise<ObtainedCertificate> {
    return new Promise((resolve, reject) => {
      const call: Call = {
        domain,
        issue: () => resolve({ certPem: `chain of ${domain} #${this.calls.length}`, keyPem: "key", serial: "0A", notAfter: new Date(Date.now() + 90 * 86_400_000) }),
        fail: (reason) => reject(new Error(reason)),
      };
      this.calls.push(call);
      if (this.answerAtOnce) call.issue();
    });
  }

  /** The `n`th order (from 1) for `domain`, once it has been placed. */
  async order(domain: string, n = 1): Promise<Call> {
    for (let i = 0; i < 400; i++) {
      const call = this.calls.filter((c) => c.domain === domain)[n - 1];
      if (call) return call;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no order ${n} for ${domain}; orders: ${this.calls.map((c) => c.domain).join(", ")}`);
  }
}

for (const backend of await databaseBackends()) {
  describe(`certificate orders (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let orgId: number;
    const served: ServedCertificate[][] = [];
    const router = {
      setCertificates: async (list: ServedCertificate[]) => void served.push(list),
      setAcmeChallenge: async () => undefined,
      removeAcmeChallenge: async () => undefined,
    } as unknown as RouterControl;
    const config = { acme: "on", domain: "apps.example.com", acmeDirectory: "https://ca.invalid/dir", acmeRenewDays: 30 } as DeckConfig;
    const logs: string[] = [];
    const log = (line: string) => void logs.push(line);

    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      orgId = (await insertOrganization(t.db.pool, { name: "o", slug: "o" })).id;
    });
    after(async () => {
      await t?.cleanup();
    });
    const app = (name: string) => insertApp(t.db.pool, { name, orgId, createdBy: null });
    /** domains:remove as deck does it: the domain, then its certificate row. */
    const removeAppDomain = async (appId: number, domain: string) => {
      await removeDomain(t.db.pool, appId, domain);
      await deleteCertificate(t.db.pool, domain);
    };

    it("a CA that accepts connections and never answers fails the order after the request timeout", { timeout: 30_000 }, async () => {
      const held: net.Socket[] = [];
      const silent = net.createServer((socket) => void held.push(socket.on("error", () => undefined)));
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
      const directory = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/directory`;
      try {
        const silentConfig = { ...config, acmeDirectory: directory };
        const issuer = new AcmeIssuer({ db: t.db.pool, config: silentConfig, router, requestTimeoutMs: 500 });
        const certs = new CertManager({ db: t.db.pool, config: silentConfig, router, log, issuer });
        const shop = await app("silent");
        await addDomain(t.db.pool, shop.id, "silent.example.com");
        const started = Date.now();
        certs.request(shop, "silent.example.com");
        await certs.idle();
        assert.ok(Date.now() - started < 10_000);
        const row = await findCertificate(t.db.pool, "silent.example.com");
        assert.equal(row?.status, "failed");
        assert.equal(row?.error, `no answer from ${directory} within 500 ms (request timed out)`);
      } finally {
        for (const s of held) s.destroy();
        silent.close();
      }
    });

    it("an order that never ends fails at the order deadline, and the check goes on to the next domain", { timeout: 30_000 }, async () => {
      const issuer = new FakeIssuer();
      const certs = new CertManager({ db: t.db.pool, config, router, log, issuer, orderTimeoutMs: 300 });
      const stuck = await app("stuck");
      for (const d of ["stuck1.example.com", "stuck2.example.com"]) await addDomain(t.db.pool, stuck.id, d);
      const ordered = await certs.checkDue();
      assert.deepEqual(ordered.filter((d) => d.startsWith("stuck")), ["stuck1.example.com", "stuck2.example.com"]);
      for (const d of ["stuck1.example.com", "stuck2.example.com"]) {
        const row = await findCertificate(t.db.pool, d);
        assert.equal(row?.status, "failed", d);
        assert.equal(row?.error, "the order did not finish within 300 ms (timed out)");
      }
      // The next check is a new one, not the first one still waiting.
      assert.deepEqual((await certs.checkDue()).filter((d) => d.startsWith("stuck")), []);
    });

    it("a domain moved to another app while its first order runs gets an order of its own when that one ends", async () => {
      const issuer = new FakeIssuer();
      const certs = new CertManager({ db: t.db.pool, config, router, log, issuer });
      const a = await app("a");
      const b = await app("b");
      await addDomain(t.db.pool, a.id, "moved.example.com");
      certs.request(a, "moved.example.com");
      const first = await issuer.order("moved.example.com");
      await removeAppDomain(a.id, "moved.example.com");
      await addDomain(t.db.pool, b.id, "moved.example.com");
      certs.request(b, "moved.example.com");
      first.issue();
      (await issuer.order("moved.example.com", 2)).issue();
      await certs.idle();
      const row = await findCertificate(t.db.pool, "moved.example.com");
      assert.equal(row?.appId, b.id);
      assert.equal(row?.status, "issued");
      assert.ok(logs.includes("certificates: moved.example.com left its app while its certificate was being ordered; not kept"));
    });

    it("a domain removed and added again while its order fails is ordered again, and its failure shows", async () => {
      const issuer = new FakeIssuer();
      const certs = new CertManager({ db: t.db.pool, config, router, log, issuer });
      const c = await app("c");
      await addDomain(t.db.pool, c.id, "readd.example.com");
      certs.request(c, "readd.example.com");
      const first = await issuer.order("readd.example.com");
      await removeAppDomain(c.id, "readd.example.com");
      await addDomain(t.db.pool, c.id, "readd.example.com");
      certs.request(c, "readd.example.com");
      first.fail("connection refused");
      (await issuer.order("readd.example.com", 2)).fail("connection refused again");
      await certs.idle();
      const row = await findCertificate(t.db.pool, "readd.example.com");
      assert.equal(row?.status, "failed");
      assert.equal(row?.error, "connection refused again");
      assert.equal(issuer.calls.filter((o) => o.domain === "readd.example.com").length, 2);
    });

    it("the check orders custom domains that never had a certificate row (added while DECK_ACME was off)", async () => {
      const issuer = new FakeIssuer();
      issuer.answerAtOnce = true;
      const certs = new CertManager({ db: t.db.pool, config, router, log, issuer });
      const d = await app("d");
      await addDomain(t.db.pool, d.id, "late.example.com");
      await addDomain(t.db.pool, d.id, "late.own.test");
      const ordered = await certs.checkDue();
      assert.ok(ordered.includes("late.example.com"), ordered.join(", "));
      assert.ok(!ordered.includes("late.own.test"), "a name no public CA certifies keeps the fallback");
      assert.equal((await findCertificate(t.db.pool, "late.example.com"))?.status, "issued");
      assert.ok(served.at(-1)!.some((c) => c.hosts.includes("late.example.com")));
    });
  });
}
