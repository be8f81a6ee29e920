/**
 * The business at a glance (platform admins): revenue this month, MRR, subscriptions by plan,
 * overdue invoices and the organisations using the most. Enter on an invoice or a usage row opens
 * that organisation.
 */
import React from "react";
import { useInput } from "ink";
import type { ScreenDef, ScreenProps } from "../screen.ts";
import { formatBytes, layoutTable, truncateText } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatDate, formatDollars, renderLines, useSelection, type Line } from "./row-selection.ts";

/** `GET /billing/overview`. */
export interface BillingOverview {
  period: { start: string; end: string };
  currency: string;
  revenueCents: number;
  mrrCents: number;
  subscriptions: { plan: string; orgs: number; mrrCents: number }[];
  overdue: { org: string; number: string; totalCents: number; status: string; dueAt: string | null; daysOverdue: number }[];
  topUsage: { org: string; plan: string; buildMinutes: number; bandwidthBytes: number; storageGbMonths: number; estimateCents: number }[];
}

/** A row Enter can open: an overdue invoice or a top-usage row, each naming its organisation. */
interface Pick { key: string; org: string }

const BAR = 16;

/** A bar of `width` cells for `value` out of `max`. */
export function bar(value: number, max: number, width = BAR): string {
  const full = max > 0 ? Math.round((Math.max(0, value) / max) * width) : 0;
  return "█".repeat(full) + "·".repeat(width - full);
}

export function BillingScreen(props: ScreenProps): React.ReactElement {
  const polled = usePoll(() => props.client.request<BillingOverview>("GET", "/billing/overview"));
  const data = polled.data;
  const f = props.filter.toLowerCase();
  const keep = (org: string, plan = "") => org.toLowerCase().includes(f) || plan.toLowerCase().includes(f);
  const overdue = (data?.overdue ?? []).filter((o) => keep(o.org) || o.number.toLowerCase().includes(f));
  const usage = (data?.topUsage ?? []).filter((u) => keep(u.org, u.plan));
  const picks: Pick[] = [...overdue.map((o) => ({ key: `o${o.number}`, org: o.org })), ...usage.map((u) => ({ key: `u${u.org}`, org: u.org }))];
  const sel = useSelection(picks);
  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    const pick = sel.now().row;
    if (key.return && pick) props.open("org", pick.org);
  });

  if (!data) return renderLines([{ key: "wait", text: polled.error ?? "loading…", color: polled.error ? "red" : undefined }], props);
  const width = props.width - 2;
  const lines: Line[] = [
    { key: "money", text: `revenue this month ${formatDollars(data.revenueCents)}   MRR ${formatDollars(data.mrrCents)}   period ${formatDate(data.period.start)} → ${formatDate(data.period.end)}`, bold: true },
    { key: "subs", text: "subscriptions", bold: true },
  ];
  const maxMrr = Math.max(0, ...data.subscriptions.map((s) => s.mrrCents));
  for (const s of data.subscriptions) {
    lines.push({ key: `s${s.plan}`, text: `  ${truncateText(s.plan, 14).padEnd(14)} ${String(s.orgs).padStart(5)} org${s.orgs === 1 ? " " : "s"}  ${formatDollars(s.mrrCents).padStart(12)}  ${bar(s.mrrCents, maxMrr)}` });
  }
  if (data.subscriptions.length === 0) lines.push({ key: "s-none", text: "  no organisation is on a plan" });

  const mark = (k: string) => picks[sel.at]?.key === k;
  lines.push({ key: "od", text: `overdue invoices (${data.overdue.length})`, bold: true, color: data.overdue.length ? "red" : undefined });
  if (overdue.length) {
    const t = layoutTable<BillingOverview["overdue"][number]>([
      { title: "ORG", width: 16, grow: true, cell: (o) => o.org },
      { title: "INVOICE", width: 20, cell: (o) => o.number },
      { title: "AMOUNT", width: 12, align: "right", cell: (o) => formatDollars(o.totalCents) },
      { title: "OVERDUE", width: 9, align: "right", cell: (o) => `${o.daysOverdue} day${o.daysOverdue === 1 ? "" : "s"}` },
      { title: "DUE", width: 10, cell: (o) => formatDate(o.dueAt) },
    ], overdue, width);
    lines.push({ key: "od-h", text: "  " + t.header, dim: true });
    for (const [i, text] of t.lines.entries()) {
      const k = `o${overdue[i]!.number}`;
      lines.push({ key: k, text: (mark(k) ? "> " : "  ") + text, selected: mark(k) });
    }
  } else lines.push({ key: "od-none", text: props.filter && data.overdue.length ? "  none matches the filter" : "  none" });

  lines.push({ key: "tu", text: "top usage this period", bold: true });
  if (usage.length) {
    const t = layoutTable<BillingOverview["topUsage"][number]>([
      { title: "ORG", width: 16, grow: true, cell: (u) => u.org },
      { title: "PLAN", width: 10, cell: (u) => u.plan },
      { title: "BUILD MIN", width: 9, align: "right", cell: (u) => u.buildMinutes.toLocaleString("en-US") },
      { title: "BANDWIDTH", width: 9, align: "right", cell: (u) => formatBytes(u.bandwidthBytes) },
      { title: "ESTIMATE", width: 12, align: "right", cell: (u) => formatDollars(u.estimateCents) },
    ], usage, width);
    lines.push({ key: "tu-h", text: "  " + t.header, dim: true });
    for (const [i, text] of t.lines.entries()) {
      const k = `u${usage[i]!.org}`;
      lines.push({ key: k, text: (mark(k) ? "> " : "  ") + text, selected: mark(k) });
    }
  } else lines.push({ key: "tu-none", text: "  none" });
  // A failed refresh shows under the totals, where it cannot scroll out of sight.
  if (polled.error) lines.splice(1, 0, { key: "err", text: polled.error, color: "red" });
  return renderLines(lines, props);
}

export const BILLING_SCREEN: ScreenDef = {
  name: "billing", aliases: ["b"], title: () => "billing", component: BillingScreen, keys: "Enter open the organisation",
  help: ["Enter                        open the organisation of the selected invoice or usage row"],
};
