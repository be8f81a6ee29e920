/**
 * One app, k9s-style: a header line (status, live release, URL, maintenance, your role), the action
 * keys your role allows, and seven tabs: metrics (with the latest events under them), releases,
 * processes, logs (live), domains, config (masked) and the app's events. Tab, 1–7 or ←/→ switch tabs;
 * j/k move through a tab's list.
 */
import React from "react";
import { Box, Text, useInput } from "ink";
import { maskValue, sparkline } from "../../core/index.ts";
import { ApiError, type ApiClient, type AppMetrics, type DeckEvent } from "../api-client.ts";
import { runAction, type ScreenDef, type ScreenProps } from "../screen.ts";
import { formatAge, formatBytes, formatMs, formatRate, latestValue, layoutTable, truncateText, type Column } from "../table.ts";
import { usePoll, type Polled } from "../use-poll.ts";
import { allowedAppActions, APP_ACTIONS, parseFormation, type AppAction } from "./app-actions.ts";

const h = React.createElement;

export const TABS = ["metrics", "releases", "processes", "logs", "domains", "config", "events"] as const;
export type Tab = (typeof TABS)[number];

/** `GET /apps/:app`. */
export interface AppReport {
  name: string; status: string; stopped: boolean; maintenance: boolean; router: string; url: string; framework: string | null;
  /** The caller's effective role on the app ("platform-admin" for a platform admin with none). */
  role: string | null;
  release: { version: number; description: string; commit: string | null } | null;
  formation: Record<string, number>;
  processes: { name: string; state: string; port: number | null; restarts: number; startedAt: string | null }[];
}

/** One item of `GET /apps/:app/releases` (newest first). */
export interface Release { version: number; status: string; description: string; commit: string | null; createdAt: string }

/** One item of `GET /apps/:app/domains`. */
export interface Domain { domain: string; default?: boolean; sslStatus: string; tls: string; expiresAt: string | null; error: string | null }

/** A line of the screen's body: each is cut to the terminal's width. */
interface Line { text: string; color?: string; bold?: boolean }

const LOG_LINES_KEPT = 500;
const LOG_RETRY_MS = 5000;

export const APP_DETAIL_HELP = [
  "Tab → / Shift-Tab ←          next / previous tab (1-7 pick one)",
  "j k (↓ ↑)                    move through the tab's list (releases: the one b rolls back to)",
  "(the keys below as your role on the app allows; the screen's key line shows which)",
  "r                            restart the app's processes (type y)",
  "S                            scale: TYPE=COUNT …, e.g. web=2 worker=1",
  "b                            roll back to the selected release, else the one before the live one (type the app's name)",
  "m                            maintenance mode on / off (type y)",
];

export function AppDetailScreen(props: ScreenProps & { app: string }): React.ReactElement {
  const base = `/apps/${encodeURIComponent(props.app)}`;
  const [tab, setTabState] = React.useState<Tab>("metrics");
  const [selected, setSelectedState] = React.useState<Partial<Record<Tab, number>>>({});
  // Bumped after an action so that everything shown is read again.
  const [nonce, setNonce] = React.useState(0);
  const lastEvent = [...props.events].reverse().find((e) => e.app === props.app);
  const refresh = React.useMemo(() => ({}), [lastEvent, nonce]);

  const report = usePoll(() => props.client.request<AppReport>("GET", base), { refreshKey: refresh });
  const metrics = useTabPoll(tab === "metrics", () => props.client.appMetrics(props.app, "1h"), refresh);
  const releases = useTabPoll(tab === "releases", async () => (await props.client.request<{ items: Release[] }>("GET", `${base}/releases`)).items, refresh);
  const domains = useTabPoll(tab === "domains", async () => (await props.client.request<{ items: Domain[] }>("GET", `${base}/domains`)).items, refresh);
  // Never with ?reveal=true: the dashboard shows config masked, whoever is looking.
  const config = useTabPoll(tab === "config", () => props.client.request<Record<string, string>>("GET", `${base}/config`), refresh);
  const logs = useLogLines(props.client, props.app, tab === "logs");

  const allowed = props.readonly || !report.data ? new Set<AppAction>() : allowedAppActions(report.data.role, props.me?.scopes);
  const f = props.filter.toLowerCase();
  const keep = <T>(rows: readonly T[] | undefined, text: (r: T) => string): T[] => (rows ?? []).filter((r) => text(r).toLowerCase().includes(f));
  const lists = {
    releases: keep(releases.data, (r) => `v${r.version} ${r.status} ${r.description} ${r.commit ?? ""}`),
    processes: keep(report.data?.processes, (p) => `${p.name} ${p.state}`),
    domains: keep(domains.data, (d) => `${d.domain} ${d.sslStatus} ${d.tls}`),
    config: keep(Object.entries(config.data ?? {}).sort(([a], [b]) => a.localeCompare(b)), ([k]) => k),
  };
  const count = tab in lists ? lists[tab as keyof typeof lists].length : 0;
  const at = Math.max(0, Math.min(selected[tab] ?? 0, count - 1));

  // Keys can come faster than renders (a paste, a fast typist): the handler reads what it acts on
  // through refs, and moves the tab and selection through them too.
  const tabRef = React.useRef(tab);
  const selectedRef = React.useRef(selected);
  const current = React.useRef({ count, at, allowed, report: report.data, releases: lists.releases });
  current.current = { count, at, allowed, report: report.data, releases: lists.releases };
  const setTab = (t: Tab) => {
    tabRef.current = t;
    setTabState(t);
  };
  const select = (i: number) => {
    selectedRef.current = { ...selectedRef.current, [tabRef.current]: i };
    current.current = { ...current.current, at: i };
    setSelectedState(selectedRef.current);
  };
  const refreshAfter = (ran: Promise<boolean>) => void ran.then(() => setNonce((n) => n + 1));

  const act = (action: AppAction) => {
    const { report, releases, at } = current.current;
    const app = props.app;
    if (action === "restart") {
      props.confirm(`restart ${app}`, "y", () => refreshAfter(runAction(props, `restarting ${app}`, async () => {
        await props.client.request("POST", `${base}/restart`);
        return `${app} restarted`;
      })));
    } else if (action === "scale") {
      props.ask("scale (e.g. web=2 worker=1): ", (text) => {
        const answer = parseFormation(text);
        if (!answer.ok) return props.notify(answer.message, "error");
        refreshAfter(runAction(props, `scaling ${app}`, async () => {
          const r = await props.client.request<{ formation: Record<string, number> }>("PATCH", `${base}/formation`, answer.formation);
          return `${app} scaled: ${describeFormation(r.formation)}`;
        }));
      });
    } else if (action === "rollback") {
      const target = tabRef.current === "releases" ? releases[at] : undefined;
      if (tabRef.current === "releases" && !target) return props.notify("no release selected: nothing to roll back to", "error");
      if (target?.status === "live") return props.notify(`v${target.version} is live already: select an earlier release (j/k)`, "error");
      const to = target ? `v${target.version}` : "the release before the live one";
      props.confirm(`roll back ${app} to ${to}`, app, () => refreshAfter(runAction(props, `rolling back ${app} to ${to}`, async () => {
        const r = await props.client.request<{ release: number; target: number }>("POST", `${base}/rollback`, target ? { version: target.version } : {});
        return `${app} rolled back to v${r.target} (as v${r.release})`;
      })));
    } else if (action === "maintenance" && report) {
      const on = !report.maintenance;
      props.confirm(`maintenance ${on ? "on" : "off"} for ${app}`, "y", () => refreshAfter(runAction(props, `turning maintenance ${on ? "on" : "off"}`, async () => {
        const r = await props.client.request<{ maintenance: boolean }>("POST", `${base}/maintenance`, { enabled: on });
        return `maintenance ${r.maintenance ? "on" : "off"} for ${app}${r.maintenance ? ": every request gets the maintenance page" : ""}`;
      })));
    }
  };

  useInput((input, key) => {
    if (!props.keysLive()) return;
    const { count, at, allowed } = current.current;
    const step = (by: number) => setTab(TABS[(TABS.indexOf(tabRef.current) + by + TABS.length) % TABS.length]!);
    if (key.tab) step(key.shift ? -1 : 1);
    else if (key.rightArrow) step(1);
    else if (key.leftArrow) step(-1);
    else if (/^[1-7]$/.test(input)) setTab(TABS[Number(input) - 1]!);
    else if (key.downArrow || input === "j") select(Math.min(at + 1, Math.max(0, count - 1)));
    else if (key.upArrow || input === "k") select(Math.max(at - 1, 0));
    else {
      const action = APP_ACTIONS.find((a) => a.key === input && allowed.has(a.action));
      if (action) act(action.action);
    }
  });

  // Without the app's report the header says why; the tabs still show what they can read.
  const top: Line[] = [!report.data && report.error ? { text: `${props.app}: ${report.error}`, color: "red" } : { text: headerLine(props.app, report.data, props.width), bold: true, color: "cyan" }];
  if (report.data && report.error) top.push({ text: report.error, color: "red" });
  if (allowed.size) top.push({ text: actionLine(allowed, report.data), color: "yellow" });
  const room = Math.max(1, props.height - top.length - 1);
  const view: TabView = { width: props.width, room, at, filter: props.filter };
  const mine = props.events.filter((e) => e.app === props.app && `${e.type} ${JSON.stringify(e.data)}`.toLowerCase().includes(f));
  const body = tab === "metrics" ? metricsLines(metrics, mine, view)
    : tab === "releases" ? releaseLines(releases, lists.releases, view)
    : tab === "processes" ? processLines(report, lists.processes, view)
    : tab === "logs" ? logLines(logs, view)
    : tab === "domains" ? domainLines(domains, lists.domains, view)
    : tab === "config" ? configLines(config, lists.config, view)
    : eventLines(mine, view);
  const line = (l: Line, key: string) => h(Text, {
    key, wrap: "truncate", bold: props.color && l.bold, color: props.color ? l.color : undefined,
  }, truncateText(l.text, props.width) || " ");
  return h(Box, { flexDirection: "column" },
    ...top.map((l, i) => line(l, `top${i}`)),
    tabsLine(tab, props.width, props.color),
    ...body.slice(0, room).map((l, i) => line(l, `b${i}`)));
}

/** The registry entry for the app screen (`props.arg` is the app's name). */
export const APP_DETAIL_SCREEN: ScreenDef = {
  name: "app", title: (arg) => `app ${arg ?? ""}`,
  component: (p) => h(AppDetailScreen, { ...p, app: p.arg ?? "" }),
  // The action keys depend on the role deck reports for the app, so the screen shows them itself.
  keys: "Tab next tab",
  help: APP_DETAIL_HELP,
};

/**
 * Polls only while its tab is shown (and at once when it is opened); meanwhile it keeps what it last
 * read, so coming back to a tab shows that until the fresh answer arrives.
 */
function useTabPoll<T>(active: boolean, load: () => Promise<T>, refresh: object): Polled<T> {
  const kept = React.useRef<T | undefined>(undefined);
  const refreshKey = React.useMemo(() => ({}), [active, refresh]);
  return usePoll(async () => (active ? (kept.current = await load()) : (kept.current as T)), { refreshKey });
}

/** The app's log, followed live while `active`: the last 50 lines, then each new one (newest last). */
function useLogLines(client: ApiClient, app: string, active: boolean): { lines: string[]; problem: string | undefined } {
  const [state, setState] = React.useState<{ lines: string[]; problem: string | undefined }>({ lines: [], problem: undefined });
  const [attempt, setAttempt] = React.useState(0);
  React.useEffect(() => {
    if (!active) return;
    const stop = new AbortController();
    let retry: ReturnType<typeof setTimeout> | undefined;
    // Each connection starts again with the last 50 lines.
    setState({ lines: [], problem: undefined });
    const ended = (problem: string, again: boolean) => {
      if (stop.signal.aborted) return;
      setState((s) => ({ ...s, problem: again ? `${problem}; trying again in ${LOG_RETRY_MS / 1000} s` : problem }));
      if (again) retry = setTimeout(() => setAttempt((n) => n + 1), LOG_RETRY_MS);
    };
    client.followEvents(`/apps/${encodeURIComponent(app)}/logs?follow=true&lines=50`, (e) => {
      // Log lines are the stream's unnamed events (`data: LINE`).
      if (e.event === "message") setState((s) => ({ lines: [...s.lines.slice(-(LOG_LINES_KEPT - 1)), plainText(e.data)], problem: undefined }));
    }, stop.signal).then(
      () => ended("the log stream ended", true),
      // Refused (a role without logs) or gone: asking again would get the same answer.
      (err: unknown) => ended(err instanceof Error ? err.message : String(err), !(err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 404))),
    );
    return () => {
      stop.abort();
      clearTimeout(retry);
    };
  }, [client, app, active, attempt]);
  return state;
}

/** Control characters (colour codes, tabs) would move the terminal's cursor and break the layout. */
function plainText(s: string): string {
  return s.replace(/\u001B\[[0-9;?]*[A-Za-z]/g, "").replace(/\t/g, "  ").replace(/[\u0000-\u001F\u007F]/g, "");
}

/** "shop  running  v7 abc1234  https://shop.example.com  maintenance off  role owner": the URL gives way first. */
export function headerLine(app: string, report: AppReport | undefined, width: number): string {
  if (!report) return truncateText(`${app}  loading…`, width);
  const release = report.release ? `v${report.release.version}${report.release.commit ? " " + report.release.commit.slice(0, 7) : ""}` : "no release";
  const before = `${report.name}  ${report.status}  ${release}  `;
  const after = `  maintenance ${report.maintenance ? "on" : "off"}  role ${report.role ?? "–"}`;
  return truncateText(before + truncateText(report.url, Math.max(8, width - before.length - after.length)) + after, width);
}

function actionLine(allowed: ReadonlySet<AppAction>, report: AppReport | undefined): string {
  const label: Record<AppAction, string> = {
    restart: "restart", scale: "scale", rollback: "rollback", maintenance: `maintenance ${report?.maintenance ? "off" : "on"}`,
  };
  return APP_ACTIONS.filter((a) => allowed.has(a.action)).map((a) => `${a.key} ${label[a.action]}`).join("  ");
}

/** " 1 metrics [2 releases] 3 processes …": the tab shown is bracketed (and inverse in colour). */
function tabsLine(tab: Tab, width: number, color: boolean): React.ReactElement {
  const labels = TABS.map((t, i) => (t === tab ? `[${i + 1} ${t}]` : ` ${i + 1} ${t} `));
  const text = truncateText(labels.join(""), width);
  const start = labels.slice(0, TABS.indexOf(tab)).join("").length;
  const end = start + labels[TABS.indexOf(tab)]!.length;
  return h(Text, { key: "tabs", wrap: "truncate" },
    text.slice(0, start), h(Text, { bold: color, inverse: color }, text.slice(start, end)), text.slice(end));
}

function describeFormation(formation: Record<string, number>): string {
  return Object.entries(formation).map(([type, n]) => `${type}=${n}`).join(" ") || "no processes";
}

interface TabView { width: number; room: number; at: number; filter: string }

function waiting<T>(polled: Polled<T>): Line[] | null {
  if (polled.data !== undefined) return null;
  return [polled.error ? { text: polled.error, color: "red" } : { text: "loading…" }];
}

/** A table with the selected row marked, scrolled so that row shows, and the last poll's failure under it. */
function tableLines<Row>(columns: Column<Row>[], rows: readonly Row[], view: TabView, none: string, error: string | undefined): Line[] {
  const table = layoutTable(columns, rows, view.width - 2);
  const lines: Line[] = [{ text: "  " + table.header, bold: true }];
  const visible = Math.max(1, view.room - 1 - (error ? 1 : 0));
  const first = Math.max(0, Math.min(view.at - visible + 1, rows.length - visible));
  for (const [i, text] of table.lines.slice(first, first + visible).entries()) {
    const mine = first + i === view.at;
    lines.push({ text: (mine ? "> " : "  ") + text, color: mine ? "cyan" : undefined });
  }
  if (rows.length === 0) lines.push({ text: view.filter ? "  nothing matches the filter" : `  ${none}` });
  if (error) lines.push({ text: error, color: "red" });
  return lines;
}

/** The metrics as sparklines, and under them the app's latest events in the rows left. */
function metricsLines(polled: Polled<AppMetrics>, events: DeckEvent[], view: TabView): Line[] {
  const lines = waiting(polled) ?? sparklineLines(polled.data!, view);
  if (polled.data && polled.error) lines.push({ text: polled.error, color: "red" });
  return [...lines, ...eventLines(events, { ...view, room: view.room - lines.length })];
}

function sparklineLines(m: AppMetrics, view: TabView): Line[] {
  const chart = Math.max(8, view.width - 28);
  const series = (pick: (p: AppMetrics["points"][number]) => number | null) => sparkline(m.points.map(pick).slice(-chart));
  const n = m.points.length;
  return [
    { text: `the last hour${Number.isNaN(Date.parse(m.since)) ? "" : ` (since ${m.since.slice(11, 16)} UTC)`}: ${n} step${n === 1 ? "" : "s"} of ${m.step} s` },
    { text: `requests/s ${formatRate(latestValue(m, (p) => p.requestsPerSecond)).padStart(8)}  ${series((p) => p.requestsPerSecond)}` },
    { text: `p95        ${formatMs(latestValue(m, (p) => p.p95Ms)).padStart(8)}  ${series((p) => p.p95Ms)}` },
    { text: `5xx share  ${pct(latestValue(m, (p) => p.errorRate)).padStart(8)}  ${series((p) => p.errorRate)}` },
    { text: `memory     ${formatBytes(latestValue(m, (p) => p.rssBytes)).padStart(8)}  ${series((p) => p.rssBytes)}` },
  ];
}

function releaseLines(polled: Polled<Release[]>, rows: Release[], view: TabView): Line[] {
  const now = Date.now();
  return waiting(polled) ?? tableLines<Release>([
    { title: "VERSION", width: 7, cell: (r) => `v${r.version}` },
    { title: "STATUS", width: 10, cell: (r) => r.status },
    { title: "DESCRIPTION", width: 16, grow: true, cell: (r) => r.description },
    { title: "COMMIT", width: 7, cell: (r) => r.commit?.slice(0, 7) ?? "–" },
    { title: "WHEN", width: 8, cell: (r) => formatAge(r.createdAt, now) },
  ], rows, view, "no releases yet: git push to deploy", polled.error);
}

function processLines(polled: Polled<AppReport>, rows: AppReport["processes"], view: TabView): Line[] {
  const wait = waiting(polled);
  if (wait) return wait;
  const now = Date.now();
  return [
    { text: `formation ${describeFormation(polled.data!.formation)}` },
    ...tableLines<AppReport["processes"][number]>([
      { title: "NAME", width: 10, grow: true, cell: (p) => p.name },
      { title: "STATE", width: 10, cell: (p) => p.state },
      { title: "PORT", width: 6, align: "right", cell: (p) => (p.port === null ? "–" : String(p.port)) },
      { title: "RESTARTS", width: 8, align: "right", cell: (p) => String(p.restarts) },
      { title: "STARTED", width: 8, cell: (p) => formatAge(p.startedAt, now) },
    ], rows, { ...view, room: view.room - 1 }, "no processes running", polled.error),
  ];
}

function logLines(log: { lines: string[]; problem: string | undefined }, view: TabView): Line[] {
  const f = view.filter.toLowerCase();
  const kept = log.lines.filter((l) => l.toLowerCase().includes(f));
  const room = Math.max(1, view.room - (log.problem ? 1 : 0));
  const lines: Line[] = kept.slice(-room).map((text) => ({ text }));
  if (kept.length === 0 && !log.problem) lines.push({ text: view.filter ? "no log line matches the filter" : "waiting for log lines…" });
  if (log.problem) lines.push({ text: log.problem, color: "red" });
  return lines;
}

function domainLines(polled: Polled<Domain[]>, rows: Domain[], view: TabView): Line[] {
  return waiting(polled) ?? tableLines<Domain>([
    { title: "DOMAIN", width: 22, grow: true, cell: (d) => d.domain },
    { title: "CERTIFICATE", width: 11, cell: (d) => d.sslStatus },
    { title: "EXPIRES", width: 10, cell: (d) => d.expiresAt?.slice(0, 10) ?? "–" },
    { title: "NOTE", width: 22, cell: (d) => d.error ?? (d.default ? "the app's default name" : "") },
  ], rows, view, "no domains", polled.error);
}

function configLines(polled: Polled<Record<string, string>>, rows: [string, string][], view: TabView): Line[] {
  const wait = waiting(polled);
  if (wait) return wait;
  return [
    { text: `${Object.keys(polled.data!).length} config vars, values masked` },
    // deck masks the values it sends; masking again changes nothing then, and hides a value a deck sent in clear.
    ...tableLines<[string, string]>([
      { title: "KEY", width: 24, grow: true, cell: ([k]) => k },
      { title: "VALUE", width: 12, cell: ([, v]) => maskValue(v) },
    ], rows, { ...view, room: view.room - 1 }, "no config vars", polled.error),
  ];
}

function eventLines(events: DeckEvent[], view: TabView): Line[] {
  const lines: Line[] = [{ text: "events (live: deploys, uptime, alerts)" }];
  if (events.length === 0) lines.push({ text: "  none since the dashboard started" });
  for (const e of events.slice(-Math.max(1, view.room - 1))) lines.push({ text: `  ${describeEvent(e.type, e.data)}`, color: e.data.to === "failed" ? "red" : undefined });
  return lines;
}

function pct(v: number | null): string {
  return v === null ? "–" : `${(v * 100).toFixed(1)}%`;
}

function describeEvent(type: string, data: Record<string, unknown>): string {
  const at = typeof data.at === "string" ? data.at.slice(11, 19) + " " : "";
  if (type === "deploy") return `${at}${String(data.kind ?? "deploy")} #${String(data.deploymentId ?? "?")} ${String(data.from ?? "")} → ${String(data.to ?? "")}${data.message ? `: ${String(data.message)}` : ""}`;
  return `${at}${type}: ${JSON.stringify(data)}`;
}
