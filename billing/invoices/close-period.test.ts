import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DEFAULT_CATALOGUE, findPlan } from "../../core/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import {
  findInvoice, insertCredit, insertOrganization, insertPlanChange, listInvoicesOfOrg, openCreditsOf, q, tryInvoiceJobLock, updateInvoiceStatus, type Db,
} from "../../store/queries/index.ts";
import { changeInvoiceStatus, closePeriod, InvoiceJobs } from "./index.ts";

const JANUARY = { start: "2027-01-01T00:00:00.000Z", end: "2027-02-01T00:00:00.000Z" };
const FEBRUARY = { start: "2027-02-01T00:00:00.000Z", end: "2027-03-01T00:00:00.000Z" };
const AFTER_JANUARY = new Date("2027-02-01T02:00:00Z");
const AFTER_FEBRUARY = new Date("2027-03-01T02:00:00Z");

/** An org that existed well before the periods the tests bill (created_at would otherwise be today). */
async function createOrg(db: Db, name: string, slug: string): Promise<number> {
  const org = await insertOrganization(db, { name, slug });
  await db.query(q`UPDATE organizations SET created_at = '2026-06-01T00:00:00Z' WHERE id = ${org.id}`);
  return org.id;
}

async function putOnPro(db: Db, orgId: number): Promise<void> {
  await insertPlanChange(db, { orgId, plan: "pro", startsAt: new Date("2026-12-01T00:00:00Z"), createdBy: null });
}

let keys = 0;
async function recordUsage(db: Db, e: { orgId: number; app: string | null; meter: string; quantity: number; at: string }): Promise<void> {
  await db.query(q`INSERT INTO usage_records (key, org_id, app, meter, quantity, at)
    VALUES (${`test:${++keys}`}, ${e.orgId}, ${e.app}, ${e.meter}, ${e.quantity}, ${e.at}::timestamptz)`);
}

const GB = 1_000_000_000;

for (const backend of await databaseBackends()) {
  describe(`closing a billing period (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => t?.cleanup());

    it("bills a Pro org its fee and the build minutes and bandwidth beyond its allowance, numbered in sequence with the next org's", async () => {
      const db = t.db.pool;
      const acme = await createOrg(db, "Acme Corp", "acme");
      await putOnPro(db, acme);
      // web builds for 1,200 min and api for 300; web sends 1,100 GB and api 150 GB.
      await recordUsage(db, { orgId: acme, app: "web", meter: "build_seconds", quantity: 1200 * 60, at: "2027-01-10T12:00:00Z" });
      await recordUsage(db, { orgId: acme, app: "api", meter: "build_seconds", quantity: 300 * 60, at: "2027-01-20T08:30:00Z" });
      await recordUsage(db, { orgId: acme, app: "web", meter: "bandwidth_bytes", quantity: 1100 * GB, at: "2027-01-31T23:59:59Z" });
      await recordUsage(db, { orgId: acme, app: "api", meter: "bandwidth_bytes", quantity: 150 * GB, at: "2027-01-01T00:00:00Z" });
      // Outside January: not on its invoice.
      await recordUsage(db, { orgId: acme, app: "web", meter: "build_seconds", quantity: 5000 * 60, at: "2027-02-01T00:00:00Z" });
      await recordUsage(db, { orgId: acme, app: "web", meter: "bandwidth_bytes", quantity: 5000 * GB, at: "2026-12-31T23:59:59Z" });
      const beta = await createOrg(db, "Beta", "beta");
      await recordUsage(db, { orgId: beta, app: "site", meter: "build_seconds", quantity: 10 * 60, at: "2027-01-15T00:00:00Z" });

      const pro = findPlan(DEFAULT_CATALOGUE, "pro")!;
      const overMinutes = 1200 + 300 - pro.allowances.build_minutes!;
      const overGb = 1100 + 150 - pro.allowances.bandwidth_gb!;
      const expected = pro.monthlyCents + overMinutes * DEFAULT_CATALOGUE.prices.build_minutes + overGb * DEFAULT_CATALOGUE.prices.bandwidth_gb;
      assert.equal(expected, 2000 + 500 * 1 + 250 * 10, "Pro: $20 + 500 min × $0.01 + 250 GB × $0.10");

      const a = await closePeriod(db, { orgId: acme, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(a.outcome, "opened");
      if (a.outcome !== "opened") return;
      assert.match(a.invoice.number, /^DECK-2027-\d{6}$/);
      assert.equal(a.invoice.totalCents, expected);
      assert.equal(a.invoice.subtotalCents, expected);
      assert.equal(a.invoice.status, "open");
      assert.equal(a.invoice.openedAt, AFTER_JANUARY.toISOString());
      assert.equal(a.invoice.orgName, "Acme Corp");
      assert.deepEqual(a.invoice.period, JANUARY);
      const usage = a.invoice.rated.lines.filter((l) => l.kind === "usage" && l.amountCents > 0);
      assert.deepEqual(usage.map((l) => l.kind === "usage" && [l.meter, l.overage, l.amountCents, l.entryCount, l.entryIds]), [
        ["build_minutes", "500", 500, 2, undefined],
        ["bandwidth_gb", "250", 2500, 2, undefined],
      ], "the stored lines keep entry counts, not ids");

      const b = await closePeriod(db, { orgId: beta, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(b.outcome, "opened", "a free org with usage gets a $0 invoice");
      if (b.outcome !== "opened") return;
      assert.equal(b.invoice.totalCents, 0);
      const seq = (n: string) => Number(n.split("-")[2]);
      assert.equal(seq(b.invoice.number), seq(a.invoice.number) + 1);

      const again = await closePeriod(db, { orgId: acme, period: JANUARY, now: new Date("2027-02-05T00:00:00Z") });
      assert.equal(again.outcome, "existing");
      assert.equal(again.outcome === "existing" && again.invoice.number, a.invoice.number);
      assert.deepEqual((await listInvoicesOfOrg(db, acme)).map((i) => i.number), [a.invoice.number], "closing twice writes one invoice");
    });

    it("writes no invoice for an org that was free and idle all period, nor before the period ends", async () => {
      const db = t.db.pool;
      const idle = await createOrg(db, "Idle", "idle");
      const r = await closePeriod(db, { orgId: idle, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(r.outcome, "nothing_to_bill");
      const pro = await createOrg(db, "Early", "early");
      await putOnPro(db, pro);
      const early = await closePeriod(db, { orgId: pro, period: JANUARY, now: new Date("2027-01-31T23:00:00Z") });
      assert.equal(early.outcome, "period_not_ended");
      assert.deepEqual(await listInvoicesOfOrg(db, idle), []);
      assert.deepEqual(await listInvoicesOfOrg(db, pro), []);
    });

    it("takes a credit once: the next invoice gets only what is left of it, and voiding an invoice gives back what it took", async () => {
      const db = t.db.pool;
      const org = await createOrg(db, "Credited", "credited");
      await putOnPro(db, org);
      await insertCredit(db, { orgId: org, cents: 3000, reason: "Launch promotion", createdBy: null });

      const jan = await closePeriod(db, { orgId: org, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(jan.outcome, "opened");
      if (jan.outcome !== "opened") return;
      assert.deepEqual([jan.invoice.subtotalCents, jan.invoice.creditCents, jan.invoice.totalCents], [2000, 2000, 0]);
      assert.deepEqual((await openCreditsOf(db, org)).map((c) => c.cents), [1000]);

      const feb = await closePeriod(db, { orgId: org, period: FEBRUARY, now: AFTER_FEBRUARY });
      assert.equal(feb.outcome, "opened");
      if (feb.outcome !== "opened") return;
      assert.deepEqual([feb.invoice.subtotalCents, feb.invoice.creditCents, feb.invoice.totalCents], [2000, 1000, 1000]);
      assert.deepEqual(await openCreditsOf(db, org), []);
      const taken = await db.any(q`SELECT invoice_id, cents FROM invoice_credits ORDER BY invoice_id`);
      assert.deepEqual(taken.filter((r) => [jan.invoice.id, feb.invoice.id].includes(Number(r.invoice_id))).map((r) => Number(r.cents)), [2000, 1000]);

      // A voided invoice keeps its number; closing the period again writes a new one with the next number.
      const voided = await changeInvoiceStatus(db, { number: jan.invoice.number, orgId: org, action: "void", now: AFTER_FEBRUARY });
      assert.equal(voided.ok && voided.invoice.status, "void");
      assert.deepEqual((await openCreditsOf(db, org)).map((c) => c.cents), [2000], "the void invoice's credit is free again");
      const reissued = await closePeriod(db, { orgId: org, period: JANUARY, now: AFTER_FEBRUARY });
      assert.equal(reissued.outcome, "opened");
      if (reissued.outcome !== "opened") return;
      assert.notEqual(reissued.invoice.number, jan.invoice.number);
      assert.equal(reissued.invoice.creditCents, 2000);
      assert.equal((await findInvoice(db, { number: jan.invoice.number }))?.status, "void");
    });

    it("keeps an invoice, with the org's name and slug, after the org is deleted", async () => {
      const db = t.db.pool;
      const org = await createOrg(db, "Gone Ltd", "gone");
      await putOnPro(db, org);
      const r = await closePeriod(db, { orgId: org, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(r.outcome, "opened");
      if (r.outcome !== "opened") return;
      await db.query(q`DELETE FROM organizations WHERE id = ${org}`);
      const kept = await findInvoice(db, { number: r.invoice.number });
      assert.ok(kept);
      assert.deepEqual([kept.orgId, kept.orgSlug, kept.orgName, kept.totalCents], [null, "gone", "Gone Ltd", 2000]);
      assert.equal(await findInvoice(db, { number: r.invoice.number, orgId: org }), null, "no longer the deleted org's to see");
    });

    it("writes one invoice and draws one number when the same period is closed twice at once", async () => {
      const db = t.db.pool;
      const org = await createOrg(db, "Racer", "racer");
      await putOnPro(db, org);
      await insertCredit(db, { orgId: org, cents: 500, reason: "Goodwill", createdBy: null });
      const [x, y] = await Promise.all([0, 1].map(() => closePeriod(db, { orgId: org, period: JANUARY, now: AFTER_JANUARY })));
      assert.deepEqual([x!.outcome, y!.outcome].sort(), ["existing", "opened"]);
      const numbers = await db.anyFirst(q`SELECT number FROM invoices WHERE org_id = ${org}`);
      assert.equal(numbers.length, 1);
      const next = await createOrg(db, "Next", "next");
      await putOnPro(db, next);
      const n = await closePeriod(db, { orgId: next, period: JANUARY, now: AFTER_JANUARY });
      const seq = (s: unknown) => Number(String(s).split("-")[2]);
      assert.equal(n.outcome === "opened" && seq(n.invoice.number), seq(numbers[0]) + 1, "the close that found the invoice drew no number");
      assert.equal(Number(await db.oneFirst(q`SELECT count(*) FROM invoice_credits ic JOIN invoices i ON i.id = ic.invoice_id WHERE i.org_id = ${org}`)), 1);
    });

    it("lets a platform admin mark an open invoice paid, once, and refuses a move made on a stale status", async () => {
      const db = t.db.pool;
      const org = await createOrg(db, "Payer", "payer");
      await putOnPro(db, org);
      const r = await closePeriod(db, { orgId: org, period: JANUARY, now: AFTER_JANUARY });
      assert.equal(r.outcome, "opened");
      if (r.outcome !== "opened") return;
      const other = await createOrg(db, "Other", "other");
      assert.equal((await changeInvoiceStatus(db, { number: r.invoice.number, orgId: other, action: "pay", now: AFTER_JANUARY })).ok, false, "not another org's");

      const paidAt = new Date("2027-02-03T10:00:00Z");
      const paid = await changeInvoiceStatus(db, { number: r.invoice.number, action: "pay", now: paidAt });
      assert.ok(paid.ok);
      assert.deepEqual([paid.invoice.status, paid.invoice.paidAt], ["paid", paidAt.toISOString()]);
      const twice = await changeInvoiceStatus(db, { number: r.invoice.number, action: "pay", now: paidAt });
      assert.deepEqual(twice, { ok: false, code: "invoice_transition_refused", reason: `${r.invoice.number}: the invoice is already paid` });
      // A writer that read it while still open cannot move it any more.
      assert.equal(await updateInvoiceStatus(db, { id: r.invoice.id, from: "open", to: "uncollectible", at: paidAt }), false);
      assert.equal((await findInvoice(db, { number: r.invoice.number }))?.status, "paid");
    });

    it("the invoice job closes last month for every org missing its invoice, an hour after the month ends, once", async () => {
      const db = t.db.pool;
      // March 2027: no other test bills it.
      const march = { start: "2027-03-01T00:00:00.000Z", end: "2027-04-01T00:00:00.000Z" };
      const lines: string[] = [];
      let now = new Date("2027-04-01T00:30:00Z");
      const jobs = new InvoiceJobs({ db, log: (l) => lines.push(l), now: () => now });
      const before = await jobs.runOnce();
      assert.deepEqual(before.period, FEBRUARY, "half an hour after March ends, February is the last month to close");

      // More orgs than the job closes in one batch.
      for (let i = 0; i < 55; i++) await putOnPro(db, await createOrg(db, `Many ${i}`, `many-${i}`));
      const existing = await db.anyFirst(q`SELECT id FROM organizations ORDER BY id`);
      now = new Date("2027-04-01T01:30:00Z");
      // While another server holds the job's lock, this one leaves the pass to it.
      const held = await db.transaction(async (tx) => {
        assert.equal(await tryInvoiceJobLock(tx), true);
        return jobs.runOnce();
      });
      assert.deepEqual([held.skipped, held.opened], [true, []]);

      const pass = await jobs.runOnce();
      assert.deepEqual(pass.period, march);
      assert.equal(pass.failed, 0, lines.join("\n"));
      const billed = await db.anyFirst(q`SELECT org_id FROM invoices WHERE period_start = ${march.start}::timestamptz ORDER BY org_id`);
      const proOrgs = await db.anyFirst(q`SELECT DISTINCT org_id FROM subscriptions WHERE plan = 'pro' ORDER BY org_id`);
      assert.deepEqual(billed.map(Number), proOrgs.map(Number).filter((id) => existing.map(Number).includes(id)), "the Pro orgs, and not the free idle ones");
      assert.equal(pass.opened.length, billed.length);
      assert.ok(pass.nothingToBill > 0);

      assert.deepEqual((await jobs.runOnce()).opened, [], "a second pass writes nothing");
      const another = new InvoiceJobs({ db, log: (l) => lines.push(l), now: () => now });
      assert.deepEqual((await another.runOnce()).opened, [], "nor does another server's");
    });
  });
}
