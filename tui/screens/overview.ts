/** The overview: the host, deck's services, the build queue, alerts firing and the router's traffic. */
import React from "react";
import { Box, Text } from "ink";
import { sparkline } from "../../core/index.ts";
import { ApiError, type ApiClient, type AppMetrics, type Health, type ServiceHealth } from "../api-client.ts";
import type { ScreenProps } from "../screen.ts";
import { formatBytes, formatMs, formatRate, sumRequests, truncateText } from "../table.ts";
import { usePoll } from "../use-poll.ts";

const h = React.createElement;

/**
 * `health` is a line saying why there is none when deck would not give it (not an admin, an older deck);
 * `p95` is the router's p95 across every app per step, when deck sends it.
 */
interface OverviewData { health: Health | string; requests: number[]; p95: (number | null)[] | null }

async function loadHealth(client: ApiClient): Promise<Health | string> {
  try {
    return (await client.health()) ?? "health: not available (404)";
  } catch (err) {
    // Someone who is not a platform admin still sees the apps' traffic.
    if (err instanceof ApiError && err.code === "forbidden") return "health: only platform admins see the host and services (403)";
    throw err;
  }
}

/** "router up", "database DOWN", "builders 2 nodes" (a service reported only through its nodes). */
export function describeService(s: ServiceHealth): string {
  if (typeof s.up === "boolean") return `${s.name} ${s.up ? "up" : "DOWN"}`;
  const nodes = Object.entries(s).find(([k, v]) => k.endsWith("Nodes") && Array.isArray(v))?.[1] as unknown[] | undefined;
  return nodes ? `${s.name} ${nodes.length} node${nodes.length === 1 ? "" : "s"}` : s.name;
}

async function loadOverview(client: ApiClient): Promise<OverviewData> {
  const health = await loadHealth(client);
  // A platform admin gets the router's traffic and p95 across every app in one answer.
  if (typeof health !== "string" && health.traffic) {
    return { health, requests: health.traffic.map((p) => p.requestsPerSecond), p95: health.traffic.map((p) => p.p95Ms) };
  }
  // Anyone else: their own apps' request rates added up. One app's metrics failing leaves the others in the sum.
  const apps = await client.apps();
  const metrics = await Promise.all(apps.map((a) => client.appMetrics(a.name, "5m").catch((): AppMetrics | null => null)));
  return { health, requests: sumRequests(metrics.filter((m): m is AppMetrics => m !== null)), p95: null };
}

export function OverviewScreen(props: ScreenProps): React.ReactElement {
  const polled = usePoll(() => loadOverview(props.client));
  const line = (text: string, color?: string) => h(Text, { wrap: "truncate", color: props.color ? color : undefined }, truncateText(text, props.width));
  if (!polled.data) return h(Box, { flexDirection: "column" }, line(polled.error ?? "loading…", polled.error ? "red" : undefined));
  const { health, requests } = polled.data;
  const rows: React.ReactElement[] = [];
  if (typeof health === "string") rows.push(line(health, "yellow"));
  else {
    const host = health.host;
    rows.push(line(`host      ${host.cpus} CPUs, load ${host.load1.toFixed(2)} (${Math.round((host.load1 / Math.max(1, host.cpus)) * 100)}% of the CPUs)`));
    rows.push(line(`memory    ${formatBytes(host.memTotal - host.memFree)} used of ${formatBytes(host.memTotal)}`));
    rows.push(line(host.diskTotal === null || host.diskFree === null ? "disk      unknown (deck could not read its data dir)"
      : `disk      ${formatBytes(host.diskTotal - host.diskFree)} used of ${formatBytes(host.diskTotal)}, ${formatBytes(host.diskFree)} free`));
    const down = health.services.filter((s) => s.up === false);
    rows.push(h(Box, { key: "services" },
      h(Text, { wrap: "truncate" }, "services  "),
      ...health.services.map((s, i) => h(Text, { key: s.name, wrap: "truncate", color: props.color && s.up !== undefined ? (s.up ? "green" : "red") : undefined }, `${i ? "  " : ""}${describeService(s)}`)),
      health.services.length === 0 ? h(Text, { key: "none" }, "none reported") : null));
    if (down.length) rows.push(line(`          ${down.length} of ${health.services.length} services down`, "red"));
    rows.push(line(`builds    ${health.buildQueue.waiting} waiting, ${health.buildQueue.running} running`));
    rows.push(line(`alerts    ${health.alertsFiring} firing`, health.alertsFiring > 0 ? "red" : undefined));
  }
  const now = requests.length ? requests[requests.length - 1]! : null;
  const chartWidth = Math.max(8, props.width - 30);
  rows.push(line(`requests  ${formatRate(now)}/s now  ${sparkline(requests.slice(-chartWidth))}`));
  const { p95 } = polled.data;
  if (p95) {
    const last = [...p95].reverse().find((v) => v !== null) ?? null;
    rows.push(line(`p95       ${formatMs(last)} now  ${sparkline(p95.slice(-chartWidth))}`));
  }
  if (polled.error) rows.push(line(polled.error, "red"));
  return h(Box, { flexDirection: "column" }, ...rows.map((r, i) => React.cloneElement(r, { key: i })));
}
