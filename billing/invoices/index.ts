// Invoices: closing a billing month into an invoice per org, moving invoices between statuses, and
// rendering them as a PDF and a web page.
export { closePeriod, hasSomethingToBill, type ClosePeriodOptions, type ClosePeriodResult } from "./close-period.ts";
export { changeInvoiceStatus, type ChangeInvoiceStatusOptions, type ChangeInvoiceStatusResult } from "./invoice-actions.ts";
export { InvoiceJobs, pickPeriodToClose, type InvoiceJobsOptions, type InvoicePass } from "./invoice-jobs.ts";
export { toInvoiceView, formatDay, type AppRow, type InvoiceRow, type InvoiceView, type InvoiceViewOptions } from "./invoice-view.ts";
export { renderInvoiceHtml, escapeHtml } from "./render-html.ts";
export { renderInvoicePdf, toWinAnsi } from "./render-pdf.ts";
