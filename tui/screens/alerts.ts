/**
 * Alerts across all apps: the rules firing, pending or silenced now, then what happened lately
 * (fired, resolved, rolled back). Enter opens the app; `S` holds its alert notices for a while.
 */
import React from "react";
import { Box, useInput } from "ink";
import type { ApiClient } from "../api-client.ts";
import { runAction, type ScreenDef, type ScreenProps } from "../screen.ts";
import { formatAge, layoutTable, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatClock, guardForbidden, matchesFilter, mayAct, mayActSomewhere, statusLine, useLatest, useQuestions, type Guarded } from "./platform-views.ts";
import { renderLines, useRefreshKey, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

/** `GET /alerts`: a rule not at rest. */
export interface ActiveAlert {
  app: string; org: string; ruleId: string; rule: string; kind: string; state: "firing" | "pending" | "silenced";
  value: string | null; since: string | null;
}

/** `GET /alerts`: one thing that happened to a rule. */
export interface AlertHistoryEntry {
  at: string; app: string; org: string; rule: string; status: "firing" | "resolved" | "rolled_back" | "rollback_failed"; value: string | null;
}

export interface AlertsOverview { firing: ActiveAlert[]; history: AlertHistoryEntry[] }

const HISTORY = 50;

function loadAlerts(client: ApiClient): Promise<Guarded<AlertsOverview>> {
  return guardForbidden(() => client.request<AlertsOverview>("GET", `/alerts?history=${HISTORY}`));
}

const STATE_ORDER = { firing: 0, pending: 1, silenced: 2 } as const;

function activeColumns(now: number): Column<ActiveAlert>[] {
  return [
    { title: "STATE", width: 8, cell: (a) => a.state },
    { title: "APP", width: 12, cell: (a) => a.app },
    { title: "ORG", width: 10, cell: (a) => a.org },
    { title: "RULE", width: 16, grow: true, cell: (a) => a.rule },
    { title: "VALUE", width: 10, cell: (a) => a.value ?? "–" },
    { title: "SINCE", width: 8, cell: (a) => formatAge(a.since, now) },
  ];
}

const HISTORY_COLUMNS: Column<AlertHistoryEntry>[] = [
  { title: "AT", width: 14, cell: (e) => formatClock(e.at) },
  { title: "APP", width: 12, cell: (e) => e.app },
  { title: "RULE", width: 14, grow: true, cell: (e) => e.rule },
  { title: "STATUS", width: 15, cell: (e) => e.status },
  { title: "VALUE", width: 10, cell: (e) => e.value ?? "–" },
];

const TONES: Record<string, string> = { firing: "red", rollback_failed: "red", pending: "yellow", rolled_back: "yellow", resolved: "green" };

/** The answer to `POST /apps/:app/alerts/silence`. */
interface Silence { app: string; silencedUntil: string | null }

export function AlertsScreen(props: ScreenProps): React.ReactElement {
  const lastAlert = [...props.events].reverse().find((e) => e.type === "alert");
  const refresh = useRefreshKey(lastAlert);
  const polled = usePoll(() => loadAlerts(props.client), { refreshKey: refresh.key });
  const data = polled.data?.allowed ? polled.data.data : undefined;
  const active = [...(data?.firing ?? [])]
    .sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.app.localeCompare(b.app))
    .filter((a) => matchesFilter(props.filter, [a.app, a.org, a.rule, a.state]));
  const history = (data?.history ?? []).filter((e) => matchesFilter(props.filter, [e.app, e.org, e.rule, e.status]));
  const rows: (ActiveAlert | AlertHistoryEntry)[] = [...active, ...history];
  const sel = useSelection(rows);
  const questions = useQuestions();

  const silence = (app: string) => questions.put(() => props.ask(`silence alerts of ${app} for (e.g. 1h, 30m): `, (text) => {
    const duration = text.trim();
    if (!duration) return props.notify("no duration given; nothing changed", "error");
    void runAction(props, `silencing the alerts of ${app}`, async () => {
      const r = await props.client.request<Silence>("POST", `/apps/${encodeURIComponent(app)}/alerts/silence`, { duration });
      return r.silencedUntil ? `alerts of ${app} silenced until ${formatClock(r.silencedUntil)} UTC` : `alerts of ${app} are no longer silenced`;
    }).then(refresh.bump);
  }));

  const latest = useLatest({ props, silence });
  useInput((input, key) => {
    const { props, silence } = latest.current;
    if (questions.swallow(key) || !props.keysLive()) return;
    if (sel.move(input, key)) return;
    const row = sel.now().row;
    if (!row) return;
    if (key.return) props.openApp(row.app);
    else if (input === "S" && !props.readonly && mayAct(props.me, row.org, "alerts:manage")) silence(row.app);
  });

  if (!polled.data) return statusLine(props, polled.error ?? "loading…", Boolean(polled.error));
  if (!polled.data.allowed) return statusLine(props, polled.data.message, true);
  const now = Date.now();
  const width = props.width - 2;
  const selected = rows[sel.at];
  const lines: Line[] = [];
  const count = (state: ActiveAlert["state"]) => active.filter((a) => a.state === state).length;
  lines.push({ key: "active", bold: true, text: active.length ? `alerts: ${count("firing")} firing, ${count("pending")} pending, ${count("silenced")} silenced` : "alerts: none firing" });
  if (active.length) {
    const table = layoutTable(activeColumns(now), active, width);
    lines.push({ key: "active-head", dim: true, text: "  " + table.header });
    table.lines.forEach((text, i) => {
      const mine = selected === active[i];
      lines.push({ key: `a${i}`, selected: mine, color: TONES[active[i]!.state], text: (mine ? "> " : "  ") + text });
    });
  }
  lines.push({ key: "history", bold: true, text: history.length ? `history (latest ${history.length})` : "history: nothing yet" });
  if (history.length) {
    const table = layoutTable(HISTORY_COLUMNS, history, width);
    lines.push({ key: "history-head", dim: true, text: "  " + table.header });
    table.lines.forEach((text, i) => {
      const mine = selected === history[i];
      lines.push({ key: `h${i}`, selected: mine, color: TONES[history[i]!.status], text: (mine ? "> " : "  ") + text });
    });
  }
  const footer = polled.error ? [statusLine(props, polled.error, true)] : [];
  return h(Box, { flexDirection: "column" },
    renderLines(lines, { width: props.width, height: props.height - footer.length, color: props.color }),
    ...footer);
}

export const ALERTS_SCREEN: ScreenDef = {
  name: "alerts", aliases: ["al"], title: () => "alerts", component: AlertsScreen,
  keys: (p) => `Enter app${mayActSomewhere(p, "alerts:manage") ? "  S silence" : ""}`,
  help: (p) => [
    "Enter                        open the selected alert's app",
    ...(mayActSomewhere(p, "alerts:manage") ? ["S                            silence the app's alert notices for a while (30m, 2h, 1d; off ends it)"] : []),
  ],
};
