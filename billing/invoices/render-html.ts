import type { Invoice } from "../../store/queries/index.ts";
import { toInvoiceView, type InvoiceView, type InvoiceViewOptions } from "./invoice-view.ts";

const ESCAPES: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text (org names are whatever a user typed) made safe for HTML element content and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const STYLE = `
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2330; margin: 0; background: #f3f4f6; }
main { max-width: 860px; margin: 2rem auto; background: #fff; padding: 2.5rem 3rem; border-radius: 6px; }
header { display: flex; justify-content: space-between; align-items: flex-start; border-bottom: 2px solid #1d2330; padding-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: 0; }
.issuer { font-weight: 700; font-size: 1.2rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1.2rem; margin: 1.2rem 0; }
dt { color: #5b6474; } dd { margin: 0; }
table { width: 100%; border-collapse: collapse; margin: 1rem 0; }
th { text-align: left; font-weight: 600; color: #5b6474; border-bottom: 1px solid #c9ced6; padding: .4rem .5rem; }
td { border-bottom: 1px solid #eceef1; padding: .4rem .5rem; vertical-align: top; }
.num { text-align: right; white-space: nowrap; }
.totals td { border: 0; }
.totals .due td { font-weight: 700; font-size: 1.1rem; border-top: 2px solid #1d2330; }
.status { display: inline-block; padding: .1rem .6rem; border-radius: 999px; background: #eceef1; font-weight: 600; }
.status-paid { background: #d9f2e1; } .status-void { background: #f6dcdc; } .status-uncollectible { background: #fbe9cf; }
h2 { font-size: 1.05rem; margin: 2rem 0 .3rem; }
@media print { body { background: #fff; } main { margin: 0; padding: 0; } }
`;

function renderRows(view: InvoiceView): string {
  return view.rows
    .map((r) => `<tr class="line-${r.kind}"><td>${escapeHtml(r.description)}</td><td class="num">${escapeHtml(r.quantity)}</td><td class="num">${escapeHtml(r.amount)}</td></tr>`)
    .join("\n");
}

function renderApps(view: InvoiceView): string {
  if (!view.apps.length) return "";
  const rows = view.apps
    .map((a) => `<tr><td>${escapeHtml(a.app)}</td><td class="num">${escapeHtml(a.buildMinutes)}</td><td class="num">${escapeHtml(a.bandwidthGb)}</td><td class="num">${escapeHtml(a.storageGbMonth)}</td><td class="num">${escapeHtml(a.customDomains)}</td><td class="num">${escapeHtml(a.amount)}</td></tr>`)
    .join("\n");
  return `<h2>Usage by app</h2>
<table class="apps"><thead><tr><th>App</th><th class="num">Build min</th><th class="num">Bandwidth GB</th><th class="num">Storage GB-month</th><th class="num">Domains</th><th class="num">Usage charges</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

/**
 * The invoice as one self-contained web page (inline style, no scripts, nothing fetched), for the API
 * and for printing from a browser.
 */
export function renderInvoiceHtml(invoice: Invoice, options: InvoiceViewOptions = {}): string {
  const v = toInvoiceView(invoice, options);
  const e = escapeHtml;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Invoice ${e(v.number)} — ${e(v.orgName)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<header>
  <div><div class="issuer">${e(v.issuer)}</div><h1>Invoice ${e(v.number)}</h1></div>
  <span class="status status-${v.status}">${e(v.statusText)}</span>
</header>
<dl>
  <dt>Billed to</dt><dd>${e(v.orgName)} (${e(v.orgSlug)})</dd>
  <dt>Period</dt><dd>${e(v.periodText)}</dd>
  <dt>Issued</dt><dd>${v.issuedText ? e(v.issuedText) : "not yet (draft)"}</dd>
</dl>
<table class="lines">
<thead><tr><th>Description</th><th class="num">Quantity</th><th class="num">Amount</th></tr></thead>
<tbody>
${renderRows(v)}
</tbody>
<tbody class="totals">
<tr><td></td><td class="num">Subtotal</td><td class="num">${e(v.subtotal)}</td></tr>
${v.credits ? `<tr><td></td><td class="num">Credits</td><td class="num">${e(v.credits)}</td></tr>\n` : ""}<tr><td></td><td class="num">Total</td><td class="num">${e(v.total)}</td></tr>
<tr class="due"><td></td><td class="num">Amount due</td><td class="num">${e(v.amountDue)}</td></tr>
</tbody>
</table>
${v.payUrl ? `<p><a href="${e(v.payUrl)}">Pay this invoice online</a></p>\n` : ""}${renderApps(v)}
<p class="note">Amounts in US dollars. Usage is rounded to the cent once per line.</p>
</main>
</body>
</html>
`;
}
