/** One app: its metrics over the last hour as sparklines, and its deploy events as they happen. */
import React from "react";
import { Box, Text } from "ink";
import { sparkline } from "../../core/index.ts";
import type { AppMetrics } from "../api-client.ts";
import type { ScreenProps } from "../screen.ts";
import { formatBytes, formatMs, formatRate, latestValue, truncateText } from "../table.ts";
import { usePoll } from "../use-poll.ts";

const h = React.createElement;

export function AppDetailScreen(props: ScreenProps & { app: string }): React.ReactElement {
  const polled = usePoll(() => props.client.appMetrics(props.app, "1h"));
  const line = (key: string, text: string, color?: string) => h(Text, { key, wrap: "truncate", color: props.color ? color : undefined }, truncateText(text, props.width));
  const mine = props.events.filter((e) => e.app === props.app);
  const rows: React.ReactElement[] = [line("title", `app ${props.app}`, "cyan")];
  if (!polled.data) rows.push(line("wait", polled.error ?? "loading…", polled.error ? "red" : undefined));
  else {
    const m: AppMetrics = polled.data;
    const chart = Math.max(8, props.width - 28);
    const series = (pick: (p: AppMetrics["points"][number]) => number | null) => sparkline(m.points.map(pick).slice(-chart));
    const n = m.points.length;
    rows.push(line("since", `the last hour (since ${m.since.slice(11, 16)} UTC): ${n} step${n === 1 ? "" : "s"} of ${m.step} s`));
    rows.push(line("rps", `requests/s ${formatRate(latestValue(m, (p) => p.requestsPerSecond)).padStart(8)}  ${series((p) => p.requestsPerSecond)}`));
    rows.push(line("p95", `p95        ${formatMs(latestValue(m, (p) => p.p95Ms)).padStart(8)}  ${series((p) => p.p95Ms)}`));
    rows.push(line("err", `5xx share  ${pct(latestValue(m, (p) => p.errorRate)).padStart(8)}  ${series((p) => p.errorRate)}`));
    rows.push(line("mem", `memory     ${formatBytes(latestValue(m, (p) => p.rssBytes)).padStart(8)}  ${series((p) => p.rssBytes)}`));
    if (polled.error) rows.push(line("err-msg", polled.error, "red"));
  }
  rows.push(line("events", "events (live: deploys, uptime, alerts)"));
  const room = Math.max(1, props.height - rows.length);
  if (mine.length === 0) rows.push(line("none", "  none since the dashboard started"));
  for (const [i, e] of mine.slice(-room).entries()) rows.push(line(`e${i}`, `  ${describeEvent(e.type, e.data)}`, e.data.to === "failed" ? "red" : undefined));
  return h(Box, { flexDirection: "column" }, ...rows);
}

function pct(v: number | null): string {
  return v === null ? "–" : `${(v * 100).toFixed(1)}%`;
}

function describeEvent(type: string, data: Record<string, unknown>): string {
  const at = typeof data.at === "string" ? data.at.slice(11, 19) + " " : "";
  if (type === "deploy") return `${at}${String(data.kind ?? "deploy")} #${String(data.deploymentId ?? "?")} ${String(data.from ?? "")} → ${String(data.to ?? "")}${data.message ? `: ${String(data.message)}` : ""}`;
  return `${at}${type}: ${JSON.stringify(data)}`;
}
