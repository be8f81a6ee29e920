/**
 * Security: what a platform admin should look at — failed sign-ins, denied actions, new SSH keys and
 * tokens, and apps with unusual traffic — over the last day (`t`: a week, an hour). Enter opens the
 * audit entry behind a row, or the app with unusual traffic.
 */
import React from "react";
import { Box, useInput } from "ink";
import type { ApiClient } from "../api-client.ts";
import type { ScreenDef, ScreenProps } from "../screen.ts";
import { formatAge, formatRate, layoutTable, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { guardForbidden, matchesFilter, statusLine, type Guarded } from "./platform-views.ts";
import { renderLines, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

export interface FailedSignIn { at: string; email: string | null; sourceIp: string | null; via: string; reason: string | null; auditId: number }
export interface DeniedAction { at: string; user: string | null; action: string; target: string | null; sourceIp: string | null; via: string | null; auditId: number }
export interface NewKey { at: string; user: string | null; fingerprint: string | null; title: string | null; auditId: number }
export interface NewToken { at: string; user: string | null; name: string | null; scopes: string[]; auditId: number }
export interface UnusualTraffic { app: string; org: string; at: string; requestsPerSecond: number; baselinePerSecond: number; ratio: number }

/** `GET /security?since=…`. */
export interface SecurityReport {
  since: string; failedSignIns: FailedSignIn[]; denied: DeniedAction[]; newKeys: NewKey[]; newTokens: NewToken[]; unusualTraffic: UnusualTraffic[];
}

/** The windows `t` goes through, in turn. */
export const WINDOWS = ["24h", "7d", "1h"] as const;
export type SecurityWindow = (typeof WINDOWS)[number];

/** The report, with the window it was asked for (the screen's window may have moved on since). */
function loadReport(client: ApiClient, window: SecurityWindow): Promise<Guarded<{ window: SecurityWindow; report: SecurityReport }>> {
  return guardForbidden(async () => ({ window, report: await client.request<SecurityReport>("GET", `/security?since=${window}`) }));
}

function nextWindow(w: SecurityWindow): SecurityWindow {
  return WINDOWS[(WINDOWS.indexOf(w) + 1) % WINDOWS.length]!;
}

/** One selectable row: what Enter does with it is the audit entry behind it, or the app. */
type Target = { auditId: number } | { app: string };

/** One section of the report: its title, its columns, and the words `/` looks for in a row. */
interface SectionSpec<Row> { key: string; title: string; columns: Column<Row>[]; rows: Row[]; target: (row: Row) => Target; words: (row: Row) => (string | null)[] }

/** A section laid out: the rows the filter keeps, as lines, and where Enter goes from each. */
interface Section { key: string; title: string; header: string; lines: string[]; targets: Target[] }

function sections(r: SecurityReport, view: { now: number; filter: string; width: number }): Section[] {
  const now = view.now;
  const section = <Row>(s: SectionSpec<Row>): Section => {
    const rows = s.rows.filter((row) => matchesFilter(view.filter, s.words(row)));
    const table = layoutTable(s.columns, rows, view.width);
    return { key: s.key, title: s.title, header: table.header, lines: table.lines, targets: rows.map(s.target) };
  };
  const at = <Row extends { at: string }>(): Column<Row> => ({ title: "WHEN", width: 8, cell: (x) => formatAge(x.at, now) });
  return [
    section<FailedSignIn>({
      key: "failed", title: "failed sign-ins", rows: r.failedSignIns, target: (x) => ({ auditId: x.auditId }), words: (x) => [x.email, x.sourceIp, x.via, x.reason],
      columns: [at(), { title: "EMAIL", width: 18, grow: true, cell: (x) => x.email ?? "–" }, { title: "SOURCE IP", width: 15, cell: (x) => x.sourceIp ?? "–" },
        { title: "VIA", width: 5, cell: (x) => x.via }, { title: "REASON", width: 20, cell: (x) => x.reason ?? "–" }],
    }),
    section<DeniedAction>({
      key: "denied", title: "denied actions", rows: r.denied, target: (x) => ({ auditId: x.auditId }), words: (x) => [x.user, x.action, x.target, x.sourceIp, x.via],
      columns: [at(), { title: "USER", width: 16, grow: true, cell: (x) => x.user ?? "–" }, { title: "ACTION", width: 16, cell: (x) => x.action },
        { title: "TARGET", width: 12, cell: (x) => x.target ?? "–" }, { title: "SOURCE IP", width: 15, cell: (x) => x.sourceIp ?? "–" }],
    }),
    section<NewKey>({
      key: "keys", title: "new SSH keys", rows: r.newKeys, target: (x) => ({ auditId: x.auditId }), words: (x) => [x.user, x.title, x.fingerprint],
      columns: [at(), { title: "USER", width: 18, cell: (x) => x.user ?? "–" }, { title: "TITLE", width: 12, cell: (x) => x.title ?? "–" },
        { title: "FINGERPRINT", width: 20, grow: true, cell: (x) => x.fingerprint ?? "–" }],
    }),
    section<NewToken>({
      key: "tokens", title: "new tokens", rows: r.newTokens, target: (x) => ({ auditId: x.auditId }), words: (x) => [x.user, x.name, ...x.scopes],
      columns: [at(), { title: "USER", width: 18, grow: true, cell: (x) => x.user ?? "–" }, { title: "NAME", width: 16, cell: (x) => x.name ?? "–" },
        { title: "SCOPES", width: 22, cell: (x) => x.scopes.join(",") || "–" }],
    }),
    section<UnusualTraffic>({
      key: "traffic", title: "unusual traffic", rows: r.unusualTraffic, target: (x) => ({ app: x.app }), words: (x) => [x.app, x.org],
      columns: [{ title: "APP", width: 14, grow: true, cell: (x) => x.app }, { title: "ORG", width: 12, cell: (x) => x.org },
        { title: "REQ/S", width: 7, align: "right", cell: (x) => formatRate(x.requestsPerSecond) },
        { title: "BASELINE", width: 8, align: "right", cell: (x) => formatRate(x.baselinePerSecond) },
        { title: "RATIO", width: 6, align: "right", cell: (x) => `×${x.ratio.toFixed(1)}` }, at()],
    }),
  ];
}

export function SecurityScreen(props: ScreenProps): React.ReactElement {
  const [since, setSince] = React.useState<SecurityWindow>("24h");
  const polled = usePoll(() => loadReport(props.client, since), { refreshKey: since });
  const now = Date.now();
  const loaded = polled.data?.allowed ? polled.data.data : undefined;
  const report = loaded?.report;
  // The marker column ("> ") takes two characters of the width.
  const shown = report ? sections(report, { now, filter: props.filter, width: props.width - 2 }) : [];
  // One selection across every section's rows, in the order they are shown.
  const targets = shown.flatMap((s) => s.targets);
  const sel = useSelection(targets);
  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    if (input === "t") return setSince(nextWindow);
    const target = sel.now().row;
    if (!target || !(key.return || input === "a")) return;
    if ("auditId" in target) props.open("audit", `ids=${target.auditId}`);
    else if (key.return) props.openApp(target.app);
  });

  if (!polled.data) return statusLine(props, polled.error ?? "loading…", Boolean(polled.error));
  if (!polled.data.allowed) return statusLine(props, polled.data.message, true);
  const window = polled.data.data.window;
  const heading = window === since ? `the last ${since} (t: the last ${nextWindow(since)})` : `the last ${window} (loading the last ${since}…)`;
  const lines: Line[] = [{ key: "since", dim: true, text: `${heading}${props.filter ? `, filter "${props.filter}"` : ""}` }];
  let index = 0;
  for (const s of shown) {
    lines.push({ key: s.key, bold: true, color: s.lines.length ? "yellow" : undefined, text: `${s.title}: ${s.lines.length || "none"}` });
    if (!s.lines.length) continue;
    lines.push({ key: `${s.key}-head`, dim: true, text: "  " + s.header });
    for (const [i, text] of s.lines.entries()) {
      const mine = index === sel.at;
      lines.push({ key: `${s.key}${i}`, selected: mine, text: (mine ? "> " : "  ") + text });
      index += 1;
    }
  }
  const footer = polled.error ? [statusLine(props, polled.error, true)] : [];
  return h(Box, { flexDirection: "column" },
    renderLines(lines, { width: props.width, height: props.height - footer.length, color: props.color }),
    ...footer);
}

export const SECURITY_SCREEN: ScreenDef = {
  name: "security", aliases: ["sec"], title: () => "security", component: SecurityScreen,
  keys: "Enter open  t window",
  help: [
    "Enter (a)                    open the audit entry behind the row (unusual traffic: the app)",
    "t                            the window: the last 24h, 7d, 1h",
  ],
};
