import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { DEFAULT_CATALOGUE, describeLine, rateInvoice, type PlanChange, type UsageEntry } from "../../core/index.ts";
import type { Invoice } from "../../store/queries/index.ts";
import { renderInvoiceHtml, renderInvoicePdf, toInvoiceView, toWinAnsi } from "./index.ts";

const run = promisify(execFile);
const JANUARY = { start: "2027-01-01T00:00:00.000Z", end: "2027-02-01T00:00:00.000Z" };
const GB = 1_000_000_000;

/** An invoice as closePeriod stores it, rated from this plan history and ledger. */
function makeInvoice(o: { orgName: string; orgSlug: string; planHistory: PlanChange[]; entries: UsageEntry[]; credits?: Array<{ id: string; cents: number; reason: string }> }): Invoice {
  const rated = rateInvoice({ orgId: 7, catalogue: DEFAULT_CATALOGUE, planHistory: o.planHistory, period: JANUARY, entries: o.entries, credits: o.credits ?? [], trace: "count" });
  return {
    id: 1, number: "DECK-2027-000042", orgId: 7, orgSlug: o.orgSlug, orgName: o.orgName, period: JANUARY, status: "open", currency: "usd",
    subtotalCents: rated.subtotalCents, creditCents: rated.creditCents, totalCents: rated.totalCents, rated,
    stripeInvoiceId: null, hostedUrl: null, statusAt: "2027-02-01T01:10:00.000Z", openedAt: "2027-02-01T01:10:00.000Z", paidAt: null, createdAt: "2027-02-01T01:10:00.000Z",
  };
}

const entry = (id: string, app: string | null, meter: UsageEntry["meter"], quantity: number, at: string): UsageEntry => ({ id, orgId: 7, app, meter, quantity, at });

/** Pro all month: 1,500 build minutes and 1,250 GB over two apps, and a $10 credit. */
const PRO_MONTH = {
  planHistory: [{ plan: "pro", from: "2026-12-01T00:00:00Z" }],
  entries: [
    entry("1", "web", "build_seconds", 1200 * 60, "2027-01-10T12:00:00Z"),
    entry("2", "api", "build_seconds", 300 * 60, "2027-01-20T08:30:00Z"),
    entry("3", "web", "bandwidth_bytes", 1100 * GB, "2027-01-31T23:59:59Z"),
    entry("4", "api", "bandwidth_bytes", 150 * GB, "2027-01-02T00:00:00Z"),
  ],
  credits: [{ id: "9", cents: 1000, reason: "Welcome credit" }],
};

/** Business and Pro by turns, a new plan every day: far more lines than one page holds. */
function makeBusyMonth(): { planHistory: PlanChange[]; entries: UsageEntry[] } {
  const planHistory: PlanChange[] = [];
  const entries: UsageEntry[] = [];
  for (let day = 1; day <= 31; day++) {
    const at = `2027-01-${String(day).padStart(2, "0")}T00:00:00Z`;
    planHistory.push({ plan: day % 2 ? "business" : "pro", from: at });
    entries.push(entry(`b${day}`, `app-${day % 12}`, "build_seconds", 4000 * 60, `2027-01-${String(day).padStart(2, "0")}T06:00:00Z`));
    entries.push(entry(`s${day}`, `app-${day % 12}`, "storage_byte_hours", 50 * GB * 24, `2027-01-${String(day).padStart(2, "0")}T07:00:00Z`));
  }
  return { planHistory, entries };
}

/** Every dollar amount in a text, in order: "$1,234.56", "-$10.00". */
const findDollars = (text: string) => [...text.matchAll(/-?\$[\d,]+\.\d+/g)].map((m) => m[0]);
/** Text with its line breaks gone, also those after a hyphen the PDF broke a word at ("GB-" "month"). */
const squash = (text: string) => text.replace(/-\s+/g, "-").replace(/\s+/g, " ");

const CI = process.env.CI === "true";
const POPPLER_MISSING = spawnSync("pdftotext", ["-v"]).error !== undefined || spawnSync("pdftoppm", ["-v"]).error !== undefined;
const SKIP = POPPLER_MISSING && !CI ? "pdftotext/pdftoppm are not installed (apt-get install poppler-utils)" : false;
if (SKIP) process.stderr.write(`skipping the PDF checks: ${SKIP}\n`);

describe("the invoice PDF, read the way a person would", { skip: SKIP }, () => {
  let dir: string;
  before(async () => {
    // Under CI the PDF must be checked, never skipped.
    if (POPPLER_MISSING) throw new Error("pdftotext and pdftoppm are required when CI=true (apt-get install poppler-utils)");
    dir = await mkdtemp(join(tmpdir(), "deck-invoice-"));
  });
  after(async () => dir && rm(dir, { recursive: true, force: true }));

  async function readPdf(invoice: Invoice, name: string, mode: "-layout" | "-raw" = "-layout"): Promise<{ file: string; text: string }> {
    const pdf = await renderInvoicePdf(invoice);
    assert.equal(pdf.subarray(0, 5).toString(), "%PDF-");
    const file = join(dir, `${name}.pdf`);
    await writeFile(file, pdf);
    const { stdout } = await run("pdftotext", [mode, file, "-"]);
    return { file, text: stdout };
  }

  it("shows the number, the org, the period, every line with its amount, the credit and the total", async () => {
    const invoice = makeInvoice({ orgName: "Acme & Sons <Ltd>", orgSlug: "acme", ...PRO_MONTH });
    assert.equal(invoice.totalCents, 2000 + 500 + 2500 - 1000, "Pro $20 + 500 min × $0.01 + 250 GB × $0.10 − $10 credit");
    const { file, text } = await readPdf(invoice, "pro");
    assert.match(text, /DECK-2027-000042/);
    assert.match(text, /Acme & Sons <Ltd> \(acme\)/);
    assert.match(text, /1 Jan 2027 – 31 Jan 2027/);
    assert.match(text, /Issued\s+1 Feb 2027/);
    const lines = text.split("\n");
    for (const line of invoice.rated.lines.filter((l) => l.kind !== "usage" || l.used !== "0" || l.allowance !== "0")) {
      const description = describeLine(line);
      const row = lines.find((l) => l.includes(description));
      assert.ok(row, `a row reads "${description}"\n${text}`);
    }
    assert.match(text, /Build minutes over the Pro allowance: 500 min × \$0\.01\s+1,500 min\s+\$5\.00/);
    assert.match(text, /Bandwidth over the Pro allowance: 250 GB × \$0\.10\s+1,250 GB\s+\$25\.00/);
    assert.match(text, /Credit: Welcome credit\s+-\$10\.00/);
    assert.match(text, /Subtotal\s+\$50\.00/);
    assert.match(text, /Amount due\s+\$40\.00/);
    assert.match(text, /web\s+1,200\s+1,100\s+0\s+0\s+\$\d/, "the per-app breakdown");

    const png = join(dir, "page");
    await run("pdftoppm", ["-png", "-r", "50", "-f", "1", "-l", "1", file, png]);
    const image = await readFile(`${png}-1.png`);
    assert.equal(image.subarray(1, 4).toString(), "PNG");
    assert.ok((await stat(`${png}-1.png`)).size > 2000, "a page with something on it");
    // The same page in grey: a fair share of it is ink, not a blank sheet.
    const { stdout: pgm } = await run("pdftoppm", ["-gray", "-r", "50", "-f", "1", "-l", "1", file], { encoding: "buffer", maxBuffer: 1 << 24 });
    const header = /^P5\s+(\d+)\s+(\d+)\s+255\s/.exec(pgm.subarray(0, 32).toString("latin1"));
    assert.ok(header, "a grey image");
    const pixels = pgm.subarray(pgm.length - Number(header[1]) * Number(header[2]));
    const inked = pixels.filter((p) => p < 160).length;
    assert.ok(inked > 1000, `${inked} dark pixels`);
  });

  it("carries a long table over several pages, every line on one of them", async () => {
    const invoice = makeInvoice({ orgName: "Busy", orgSlug: "busy", ...makeBusyMonth() });
    const { text } = await readPdf(invoice, "busy", "-raw");
    const pages = text.split("\f").filter((p) => p.trim());
    assert.ok(pages.length >= 3, `${pages.length} pages`);
    for (const page of pages) assert.match(page, /Description Quantity Amount|App Build min/, "each page repeats the table's header");
    assert.match(pages.at(-1)!, new RegExp(`page ${pages.length} of ${pages.length}`));
    const all = squash(text);
    const view = toInvoiceView(invoice);
    for (const row of view.rows) assert.ok(all.includes(squash(`${row.description} ${row.quantity} ${row.amount}`)), row.description);
    assert.ok(all.includes(`Total ${view.total}`), view.total);
    assert.equal(view.apps.length, 11, "twelve apps: the ten most charged one by one, then the rest in one row");
    assert.ok(all.includes("2 other apps"));
  });

  it("draws names outside the built-in font's characters without garbling the rest of the line", async () => {
    assert.equal(toWinAnsi("Zürich Ωmega Łódź 日本 – €"), "Zürich ?mega ?ódz ?? – €");
    const { text } = await readPdf(makeInvoice({ orgName: "Zürich Ωmega", orgSlug: "zurich", ...PRO_MONTH }), "unicode");
    assert.match(text, /Zürich \?mega \(zurich\)/);
  });
});

describe("the invoice web page", () => {
  it("escapes an org name a user typed, and loads nothing from elsewhere", () => {
    const html = renderInvoiceHtml(makeInvoice({ orgName: `<script>alert("x")</script> & Co`, orgSlug: "evil", ...PRO_MONTH }));
    assert.ok(!html.includes("<script"), "no script element");
    assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co (evil)"));
    assert.doesNotMatch(html, /<link|src=|url\(|@import/);
  });

  it("shows the same lines and amounts as the PDF", async () => {
    const invoice = makeInvoice({ orgName: "Acme", orgSlug: "acme", ...PRO_MONTH });
    const html = renderInvoiceHtml(invoice);
    const text = html.replace(/<style>[\s\S]*?<\/style>/, "").replace(/<[^>]+>/g, " ").replace(/&amp;/g, "&");
    assert.match(squash(text), /Build minutes over the Pro allowance: 500 min × \$0\.01 1,500 min \$5\.00/);
    assert.match(squash(text), /Amount due \$40\.00/);
    assert.match(text, /DECK-2027-000042/);
    if (POPPLER_MISSING) return;
    const dir = await mkdtemp(join(tmpdir(), "deck-invoice-"));
    try {
      await writeFile(join(dir, "i.pdf"), await renderInvoicePdf(invoice));
      const { stdout } = await run("pdftotext", ["-raw", join(dir, "i.pdf"), "-"]);
      assert.deepEqual(findDollars(text), findDollars(stdout));
      assert.ok(findDollars(text).length >= 10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("links to the hosted page only while it is owed, and only to a web address", () => {
    const invoice = { ...makeInvoice({ orgName: "Acme", orgSlug: "acme", ...PRO_MONTH }), hostedUrl: "https://invoice.stripe.com/i/acct_1/test" };
    assert.match(renderInvoiceHtml(invoice), /<a href="https:\/\/invoice\.stripe\.com\/i\/acct_1\/test">/);
    const paid = renderInvoiceHtml({ ...invoice, status: "paid", paidAt: "2027-02-03T10:00:00.000Z" });
    assert.doesNotMatch(paid, /<a href/);
    assert.match(paid, /Paid on 3 Feb 2027/);
    assert.match(paid, /Amount due[^$]*\$0\.00/);
    assert.doesNotMatch(renderInvoiceHtml({ ...invoice, hostedUrl: "javascript:alert(1)" }), /<a href/);
  });
});
