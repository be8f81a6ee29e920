/** The apps table: each app's status, release, traffic, p95, memory and last deploy; `s` sorts, Enter opens. */
import React from "react";
import { Box, Text, useInput } from "ink";
import type { ApiClient, AppMetrics, AppSummary, Deployment } from "../api-client.ts";
import type { ScreenProps } from "../screen.ts";
import { formatAge, formatBytes, formatMs, formatRate, latestValue, layoutTable, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";

const h = React.createElement;

export interface AppRow {
  name: string; status: string; release: string; requestsPerSecond: number | null; p95Ms: number | null;
  rssBytes: number | null; lastDeployAt: string | null;
}

export const SORTS = ["name", "requests/s", "p95", "memory", "last deploy"] as const;
export type SortKey = (typeof SORTS)[number];

async function loadRows(client: ApiClient): Promise<AppRow[]> {
  const apps = await client.apps();
  return Promise.all(apps.map(async (a) => {
    // A row still shows when its metrics or deployments cannot be read (a role without log access).
    const [metrics, deployment] = await Promise.all([
      client.appMetrics(a.name, "5m").catch((): AppMetrics | undefined => undefined),
      client.lastDeployment(a.name).catch((): Deployment | null => null),
    ]);
    return toRow(a, metrics, deployment);
  }));
}

function toRow(app: AppSummary, metrics: AppMetrics | undefined, deployment: Deployment | null): AppRow {
  const release = deployment?.release ?? latestValue(metrics, (p) => p.release);
  return {
    name: app.name, status: app.status, release: release === null ? "–" : typeof release === "number" ? `v${release}` : release,
    requestsPerSecond: latestValue(metrics, (p) => p.requestsPerSecond), p95Ms: latestValue(metrics, (p) => p.p95Ms),
    rssBytes: latestValue(metrics, (p) => p.rssBytes), lastDeployAt: deployment?.createdAt ?? null,
  };
}

/** Rows whose name or status holds the filter, in the chosen order (busiest, slowest, biggest, newest first). */
export function arrangeRows(rows: readonly AppRow[], filter: string, sort: SortKey): AppRow[] {
  const f = filter.toLowerCase();
  const kept = rows.filter((r) => r.name.toLowerCase().includes(f) || r.status.toLowerCase().includes(f));
  const desc = (pick: (r: AppRow) => number | null) => (a: AppRow, b: AppRow) => (pick(b) ?? -1) - (pick(a) ?? -1) || a.name.localeCompare(b.name);
  const by: Record<SortKey, (a: AppRow, b: AppRow) => number> = {
    name: (a, b) => a.name.localeCompare(b.name),
    "requests/s": desc((r) => r.requestsPerSecond),
    p95: desc((r) => r.p95Ms),
    memory: desc((r) => r.rssBytes),
    "last deploy": desc((r) => (r.lastDeployAt ? Date.parse(r.lastDeployAt) : null)),
  };
  return kept.sort(by[sort]);
}

function columns(now: number): Column<AppRow>[] {
  return [
    { title: "NAME", width: 12, grow: true, cell: (r) => r.name },
    { title: "STATUS", width: 9, cell: (r) => r.status },
    { title: "RELEASE", width: 7, cell: (r) => r.release },
    { title: "REQ/S", width: 6, align: "right", cell: (r) => formatRate(r.requestsPerSecond) },
    { title: "P95", width: 7, align: "right", cell: (r) => formatMs(r.p95Ms) },
    { title: "MEMORY", width: 9, align: "right", cell: (r) => formatBytes(r.rssBytes) },
    { title: "DEPLOYED", width: 8, cell: (r) => formatAge(r.lastDeployAt, now) },
  ];
}

export function AppsScreen(props: ScreenProps): React.ReactElement {
  // Each event is a new object: the newest deploy event changing means a deploy moved.
  const lastDeploy = [...props.events].reverse().find((e) => e.type === "deploy");
  const polled = usePoll(() => loadRows(props.client), { refreshKey: lastDeploy });
  const [sort, setSort] = React.useState<SortKey>("name");
  const [selected, setSelected] = React.useState(0);
  const rows = arrangeRows(polled.data ?? [], props.filter, sort);
  const at = Math.min(selected, Math.max(0, rows.length - 1));

  // The handler reads the rows and selection through a ref: keys may come faster than renders.
  const current = React.useRef({ rows, at });
  current.current = { rows, at };
  useInput((input, key) => {
    if (!props.keysLive()) return;
    const { rows, at } = current.current;
    const moveTo = (i: number) => {
      current.current = { rows, at: i };
      setSelected(i);
    };
    if (input === "s") setSort((s) => SORTS[(SORTS.indexOf(s) + 1) % SORTS.length]!);
    else if (key.downArrow || input === "j") moveTo(Math.min(at + 1, rows.length - 1));
    else if (key.upArrow || input === "k") moveTo(Math.max(at - 1, 0));
    else if (key.return && rows[at]) props.openApp(rows[at]!.name);
  });

  if (!polled.data) return h(Text, { color: props.color && polled.error ? "red" : undefined, wrap: "truncate" }, polled.error ?? "loading…");
  // The marker column ("> ") takes two characters of the width.
  const table = layoutTable(columns(Date.now()), rows, props.width - 2);
  const visible = Math.max(1, props.height - 3);
  const first = Math.max(0, Math.min(at - visible + 1, rows.length - visible));
  const summary = `${rows.length} of ${polled.data.length} apps, sorted by ${sort}${props.filter ? `, filter "${props.filter}"` : ""}`;
  return h(Box, { flexDirection: "column" },
    h(Text, { wrap: "truncate", dimColor: props.color }, summary),
    h(Text, { wrap: "truncate", bold: props.color }, "  " + table.header),
    ...table.lines.slice(first, first + visible).map((text, i) => {
      const mine = first + i === at;
      return h(Text, { key: rows[first + i]!.name, wrap: "truncate", color: props.color && mine ? "cyan" : undefined }, (mine ? "> " : "  ") + text);
    }),
    rows.length === 0 ? h(Text, { key: "none" }, props.filter ? "  no app matches the filter" : "  no apps yet") : null,
    polled.error ? h(Text, { wrap: "truncate", color: props.color ? "red" : undefined }, polled.error) : null);
}
