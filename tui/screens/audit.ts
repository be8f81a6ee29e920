/**
 * The audit trail across deck, newest first: the latest 50 entries, or those the Security screen
 * points at (`ids=…`). Enter shows an entry's data below the table.
 */
import React from "react";
import { Box, Text, useInput } from "ink";
import type { ApiClient } from "../api-client.ts";
import type { ScreenDef, ScreenProps } from "../screen.ts";
import { layoutTable, truncateText, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatClock, guardForbidden, matchesFilter, statusLine, type Guarded } from "./platform-views.ts";
import { renderLines, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

/** `GET /audit`: one entry. */
export interface AuditEntry {
  id: number; at: string; user: string | null; action: string; target: string | null; result: string; sourceIp: string | null;
  data: Record<string, unknown>;
}

const LATEST = 50;

/** The query of `GET /audit`: the screen's argument (`ids=1,2`, `user=EMAIL`, …), or the latest entries. */
export function auditQuery(arg: string | undefined): string {
  return arg?.trim() ? arg.trim() : `limit=${LATEST}`;
}

function loadAudit(client: ApiClient, arg: string | undefined): Promise<Guarded<AuditEntry[]>> {
  return guardForbidden(async () => (await client.request<{ items: AuditEntry[] }>("GET", `/audit?${auditQuery(arg)}`)).items);
}

const COLUMNS: Column<AuditEntry>[] = [
  { title: "TIME", width: 14, cell: (e) => formatClock(e.at) },
  { title: "USER", width: 12, grow: true, cell: (e) => e.user ?? "–" },
  { title: "ACTION", width: 14, cell: (e) => e.action },
  { title: "TARGET", width: 10, cell: (e) => e.target ?? "–" },
  { title: "RESULT", width: 6, cell: (e) => e.result },
  { title: "SOURCE IP", width: 15, cell: (e) => e.sourceIp ?? "–" },
];

/** An entry's data as indented JSON, cut to `height` lines of `width` columns (the last saying how much is left out). */
export function dataLines(entry: AuditEntry, width: number, height: number): string[] {
  const json = JSON.stringify(entry.data ?? {}, null, 2).split("\n");
  const all = [`entry #${entry.id}, ${entry.action} on ${entry.target ?? "–"}, data:`, ...json];
  const kept = all.length <= height ? all : [...all.slice(0, Math.max(0, height - 1)), `… ${all.length - height + 1} more lines`];
  return kept.slice(0, Math.max(0, height)).map((l) => truncateText(l, width));
}

export function AuditScreen(props: ScreenProps & { arg?: string }): React.ReactElement {
  const polled = usePoll(() => loadAudit(props.client, props.arg), { refreshKey: props.arg });
  const entries = polled.data?.allowed ? polled.data.data : [];
  const rows = entries.filter((e) => matchesFilter(props.filter, [e.user, e.action, e.target, e.result, e.sourceIp]));
  const sel = useSelection(rows);
  const [opened, setOpened] = React.useState<number>();
  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    const entry = sel.now().row;
    if (key.return && entry) setOpened((id) => (id === entry.id ? undefined : entry.id));
  });

  if (!polled.data) return statusLine(props, polled.error ?? "loading…", Boolean(polled.error));
  if (!polled.data.allowed) return statusLine(props, polled.data.message, true);
  // One entry (opened from Security) shows its data at once.
  const detail = rows.find((e) => e.id === opened) ?? (rows.length === 1 ? rows[0] : undefined);
  const errors = polled.error ? 1 : 0;
  const room = Math.max(1, props.height - 2 - errors);
  const tableRoom = detail ? Math.max(1, Math.min(rows.length, Math.floor(room / 2))) : room;
  const table = layoutTable(COLUMNS, rows, props.width - 2);
  const lines: Line[] = table.lines.map((text, i) => {
    const mine = i === sel.at;
    return { key: `${rows[i]!.id}`, selected: mine, color: rows[i]!.result === "denied" ? "red" : undefined, text: (mine ? "> " : "  ") + text };
  });
  const summary = `${rows.length} of ${entries.length} entr${entries.length === 1 ? "y" : "ies"}${props.arg ? ` for ${props.arg}` : `, the latest ${LATEST}`}, newest first${props.filter ? `, filter "${props.filter}"` : ""}`;
  return h(Box, { flexDirection: "column" },
    h(Text, { wrap: "truncate", dimColor: props.color }, truncateText(summary, props.width)),
    h(Text, { wrap: "truncate", bold: props.color }, truncateText("  " + table.header, props.width)),
    rows.length ? renderLines(lines, { width: props.width, height: tableRoom, color: props.color }) : h(Text, { wrap: "truncate" }, "  no entries"),
    ...(detail ? dataLines(detail, props.width, room - Math.min(rows.length, tableRoom)).map((l, i) => h(Text, { key: `d${i}`, wrap: "truncate", dimColor: props.color && i > 0 }, l || " ")) : []),
    polled.error ? statusLine(props, polled.error, true) : null);
}

export const AUDIT_SCREEN: ScreenDef = {
  // `:audit` shows the latest entries; Security opens it for the entries behind a row.
  name: "audit", aliases: [], title: (arg) => (arg ? `audit ${arg}` : "audit"), keys: "Enter data",
  component: AuditScreen,
  help: ["Enter                        show (or hide) the selected entry's data"],
};
