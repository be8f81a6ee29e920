import PDFDocument from "pdfkit";
import type { Invoice } from "../../store/queries/index.ts";
import { toInvoiceView, type InvoiceView, type InvoiceViewOptions } from "./invoice-view.ts";

/**
 * The invoice as an A4 PDF in the built-in Helvetica, so nothing has to be installed for it: the same
 * content as the web page (invoice-view.ts), with tables that carry on over as many pages as the lines
 * need, their header repeated on each.
 */

/** cp1252 characters above Latin-1's printable range, which the built-in fonts also draw. */
const WIN_ANSI_EXTRA = new Set("€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ");

/**
 * Text the built-in fonts can draw: they cover Windows-1252 only, and pdfkit writes any other character
 * as bytes that garble the rest of the line. Accents outside it are dropped (ő → o), anything else
 * becomes "?". The web page shows such names as they are.
 */
export function toWinAnsi(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xff) || WIN_ANSI_EXTRA.has(ch)) out += ch;
    else if (c === 0x09 || c === 0x0a) out += " ";
    else {
      const bare = ch.normalize("NFKD").replace(/\p{M}/gu, "");
      out += [...bare].every((b) => b.codePointAt(0)! >= 0x20 && b.codePointAt(0)! <= 0x7e) && bare ? bare : "?";
    }
  }
  return out;
}

const MARGIN = 50;
const FOOTER = 40;
const INK = "#1d2330";
const MUTED = "#5b6474";
const RULE = "#c9ced6";

interface Column {
  title: string;
  width: number;
  align: "left" | "right";
}

/** Where the next thing goes on the page, and how to start a new page. */
class PageCursor {
  y: number;
  constructor(readonly doc: PDFKit.PDFDocument) {
    this.y = doc.page.margins.top;
  }

  get bottom(): number {
    return this.doc.page.height - MARGIN - FOOTER;
  }

  /** Starts a new page unless `height` fits below the cursor; true when it did. */
  ensure(height: number): boolean {
    if (this.y + height <= this.bottom) return false;
    this.doc.addPage();
    this.y = this.doc.page.margins.top;
    return true;
  }
}

function drawText(doc: PDFKit.PDFDocument, text: string, at: { x: number; y: number; width: number; align?: "left" | "right"; bold?: boolean; size?: number; color?: string }): void {
  doc.font(at.bold ? "Helvetica-Bold" : "Helvetica").fontSize(at.size ?? 9.5).fillColor(at.color ?? INK)
    .text(toWinAnsi(text), at.x, at.y, { width: at.width, align: at.align ?? "left", lineGap: 1 });
}

function measure(doc: PDFKit.PDFDocument, text: string, width: number, bold = false, size = 9.5): number {
  return doc.font(bold ? "Helvetica-Bold" : "Helvetica").fontSize(size).heightOfString(toWinAnsi(text), { width, lineGap: 1 });
}

function drawRule(doc: PDFKit.PDFDocument, y: number, color = RULE, weight = 0.6): void {
  doc.moveTo(MARGIN, y).lineTo(doc.page.width - MARGIN, y).lineWidth(weight).strokeColor(color).stroke();
}

const CELL_GAP = 6;

/** A table whose rows run onto further pages, its header drawn again at the top of each. */
function drawTable(cursor: PageCursor, columns: readonly Column[], rows: readonly string[][]): void {
  const { doc } = cursor;
  const drawHeader = () => {
    let x = MARGIN;
    const h = Math.max(...columns.map((c) => measure(doc, c.title, c.width - CELL_GAP, true, 8.5)));
    for (const c of columns) {
      drawText(doc, c.title, { x: x + (c.align === "left" ? 0 : CELL_GAP), y: cursor.y, width: c.width - CELL_GAP, align: c.align, bold: true, size: 8.5, color: MUTED });
      x += c.width;
    }
    cursor.y += h + 4;
    drawRule(doc, cursor.y);
    cursor.y += 5;
  };
  const heightOf = (row: readonly string[]) => Math.max(...row.map((cell, i) => measure(doc, cell, columns[i]!.width - CELL_GAP)));
  const first = rows[0];
  cursor.ensure(40 + (first ? heightOf(first) : 0));
  drawHeader();
  for (const row of rows) {
    const h = heightOf(row);
    if (cursor.ensure(h + 6)) drawHeader();
    let x = MARGIN;
    for (const [i, c] of columns.entries()) {
      drawText(doc, row[i] ?? "", { x: x + (c.align === "left" ? 0 : CELL_GAP), y: cursor.y, width: c.width - CELL_GAP, align: c.align });
      x += c.width;
    }
    cursor.y += h + 3;
    drawRule(doc, cursor.y, "#eceef1", 0.4);
    cursor.y += 4;
  }
}

function drawHead(cursor: PageCursor, v: InvoiceView): void {
  const { doc } = cursor;
  const width = doc.page.width - 2 * MARGIN;
  drawText(doc, v.issuer, { x: MARGIN, y: cursor.y, width: width / 2, bold: true, size: 18 });
  drawText(doc, "INVOICE", { x: MARGIN + width / 2, y: cursor.y, width: width / 2, align: "right", bold: true, size: 18, color: MUTED });
  cursor.y += 28;
  drawText(doc, v.number, { x: MARGIN + width / 2, y: cursor.y, width: width / 2, align: "right", bold: true, size: 11 });
  cursor.y += 16;
  drawText(doc, v.statusText, { x: MARGIN + width / 2, y: cursor.y, width: width / 2, align: "right", size: 10 });
  cursor.y += 20;
  drawRule(doc, cursor.y, INK, 1.2);
  cursor.y += 12;
  const facts: Array<[string, string]> = [
    ["Billed to", `${v.orgName} (${v.orgSlug})`],
    ["Period", v.periodText],
    ["Issued", v.issuedText ?? "not yet (draft)"],
  ];
  for (const [label, value] of facts) {
    const h = measure(doc, value, width - 90, false, 10);
    drawText(doc, label, { x: MARGIN, y: cursor.y, width: 85, size: 10, color: MUTED });
    drawText(doc, value, { x: MARGIN + 90, y: cursor.y, width: width - 90, size: 10 });
    cursor.y += h + 4;
  }
  cursor.y += 14;
}

function drawTotals(cursor: PageCursor, v: InvoiceView): void {
  const { doc } = cursor;
  const rows: Array<[string, string, boolean]> = [["Subtotal", v.subtotal, false]];
  if (v.credits) rows.push(["Credits", v.credits, false]);
  rows.push(["Total", v.total, false], ["Amount due", v.amountDue, true]);
  cursor.ensure(rows.length * 16 + 20);
  cursor.y += 6;
  const right = doc.page.width - MARGIN;
  for (const [label, amount, strong] of rows) {
    if (strong) {
      doc.moveTo(right - 220, cursor.y - 2).lineTo(right, cursor.y - 2).lineWidth(1.2).strokeColor(INK).stroke();
      cursor.y += 3;
    }
    drawText(doc, label, { x: right - 220, y: cursor.y, width: 110, align: "right", bold: strong, size: strong ? 11 : 10 });
    drawText(doc, amount, { x: right - 105, y: cursor.y, width: 105, align: "right", bold: strong, size: strong ? 11 : 10 });
    cursor.y += strong ? 18 : 15;
  }
  if (v.payUrl) {
    cursor.y += 6;
    drawText(doc, `Pay online: ${v.payUrl}`, { x: MARGIN, y: cursor.y, width: right - MARGIN, size: 9, color: MUTED });
    cursor.y += measure(doc, `Pay online: ${v.payUrl}`, right - MARGIN, false, 9);
  }
  cursor.y += 18;
}

/** "Invoice DECK-2027-000001 · page 1 of 3" at the foot of every page, once all pages exist. */
function drawFooters(doc: PDFKit.PDFDocument, v: InvoiceView): void {
  const range = doc.bufferedPageRange();
  for (let i = range.start; i < range.start + range.count; i++) {
    doc.switchToPage(i);
    // Writing below the bottom margin would otherwise start yet another page.
    const bottom = doc.page.margins.bottom;
    doc.page.margins.bottom = 0;
    drawText(doc, `Invoice ${v.number} · ${v.orgSlug} · page ${i - range.start + 1} of ${range.count}`, {
      x: MARGIN, y: doc.page.height - MARGIN - 10, width: doc.page.width - 2 * MARGIN, align: "right", size: 8, color: MUTED,
    });
    doc.page.margins.bottom = bottom;
  }
}

/** The invoice as PDF bytes (A4). */
export function renderInvoicePdf(invoice: Invoice, options: InvoiceViewOptions = {}): Promise<Buffer> {
  const v = toInvoiceView(invoice, options);
  const doc = new PDFDocument({
    size: "A4", margin: MARGIN, bufferPages: true,
    info: { Title: toWinAnsi(`Invoice ${v.number}`), Author: toWinAnsi(v.issuer), Subject: toWinAnsi(`${v.orgName}, ${v.periodText}`) },
  });
  const done = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    doc.on("data", (c: Buffer) => chunks.push(c));
    doc.on("end", () => resolve(Buffer.concat(chunks)));
    doc.on("error", reject);
  });
  const cursor = new PageCursor(doc);
  drawHead(cursor, v);
  drawTable(cursor, [
    { title: "Description", width: 305, align: "left" },
    { title: "Quantity", width: 95, align: "right" },
    { title: "Amount", width: 95, align: "right" },
  ], v.rows.map((r) => [r.description, r.quantity, r.amount]));
  drawTotals(cursor, v);
  if (v.apps.length) {
    cursor.ensure(60);
    drawText(doc, "Usage by app", { x: MARGIN, y: cursor.y, width: 300, bold: true, size: 11 });
    cursor.y += 18;
    drawTable(cursor, [
      { title: "App", width: 150, align: "left" },
      { title: "Build min", width: 68, align: "right" },
      { title: "Bandwidth GB", width: 72, align: "right" },
      { title: "Storage GB-month", width: 72, align: "right" },
      { title: "Domains", width: 55, align: "right" },
      { title: "Usage charges", width: 78, align: "right" },
    ], v.apps.map((a) => [a.app, a.buildMinutes, a.bandwidthGb, a.storageGbMonth, a.customDomains, a.amount]));
  }
  cursor.ensure(20);
  drawText(doc, "Amounts in US dollars. Usage is rounded to the cent once per line.", { x: MARGIN, y: cursor.y + 6, width: doc.page.width - 2 * MARGIN, size: 8, color: MUTED });
  drawFooters(doc, v);
  doc.end();
  return done;
}
