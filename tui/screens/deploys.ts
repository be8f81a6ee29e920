/**
 * Deploys: the build queue across all apps (running builds first, then pushes waiting their turn)
 * and the builds that finished lately; Enter follows a build's output, `c` cancels an app's build.
 * The `build` screen shows one build's output, live while it runs.
 */
import React from "react";
import { Box, Text, useInput } from "ink";
import type { ApiClient } from "../api-client.ts";
import { runAction, type ScreenDef, type ScreenProps } from "../screen.ts";
import { formatAge, layoutTable, truncateText, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import {
  firstLine, formatDuration, guardForbidden, matchesFilter, mayAct, mayActSomewhere, notifyAfterKey, statusLine, useLatest, useQuestions, type Guarded,
} from "./platform-views.ts";
import { renderLines, useRefreshKey, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

/** `GET /builds`: one build running or waiting (a waiting push has no id yet). */
export interface QueuedBuild {
  app: string; org: string; id: number | null; state: "queued" | "running"; position: number | null;
  commit: string | null; builder: string | null; queuedAt: string; startedAt: string | null; elapsedSeconds: number;
}

/** `GET /builds`: one build that finished. */
export interface FinishedBuild {
  app: string; org: string; id: number; status: string; commit: string | null; startedAt: string | null;
  finishedAt: string | null; durationSeconds: number | null; error: string | null;
}

export interface BuildQueue { items: QueuedBuild[]; recent: FinishedBuild[] }

type DeployRow = { kind: "queue"; build: QueuedBuild } | { kind: "finished"; build: FinishedBuild };

/** The queue ticks between loads: elapsed times are counted on from the answer. */
const POLL_MS = 3000;
const RECENT = 20;

function loadQueue(client: ApiClient): Promise<Guarded<BuildQueue>> {
  return guardForbidden(() => client.request<BuildQueue>("GET", `/builds?recent=${RECENT}`));
}

/** Running builds first, then waiting pushes in their turn. */
export function orderQueue(items: readonly QueuedBuild[]): QueuedBuild[] {
  const rank = (b: QueuedBuild) => (b.state === "running" ? -1 : b.position ?? Number.MAX_SAFE_INTEGER);
  return [...items].sort((a, b) => rank(a) - rank(b));
}

function shortCommit(commit: string | null): string {
  return commit ? commit.slice(0, 7) : "–";
}

function queueColumns(elapsedOf: (b: QueuedBuild) => number): Column<QueuedBuild>[] {
  return [
    { title: "#", width: 3, align: "right", cell: (b) => (b.position === null ? "–" : String(b.position)) },
    { title: "APP", width: 14, grow: true, cell: (b) => b.app },
    { title: "ORG", width: 12, cell: (b) => b.org },
    { title: "COMMIT", width: 7, cell: (b) => shortCommit(b.commit) },
    { title: "STATE", width: 7, cell: (b) => b.state },
    { title: "BUILDER", width: 10, cell: (b) => b.builder ?? "–" },
    { title: "ELAPSED", width: 7, align: "right", cell: (b) => formatDuration(elapsedOf(b)) },
  ];
}

function recentColumns(now: number): Column<FinishedBuild>[] {
  return [
    { title: "APP", width: 14, cell: (b) => b.app },
    { title: "STATUS", width: 9, cell: (b) => b.status },
    { title: "COMMIT", width: 7, cell: (b) => shortCommit(b.commit) },
    { title: "TOOK", width: 7, align: "right", cell: (b) => formatDuration(b.durationSeconds) },
    { title: "ENDED", width: 8, cell: (b) => formatAge(b.finishedAt, now) },
    { title: "ERROR", width: 12, grow: true, cell: (b) => (b.error ? firstLine(b.error) : "") },
  ];
}

/** A second-by-second clock, so that elapsed times tick between loads. */
function useNow(): number {
  const [now, setNow] = React.useState(Date.now);
  React.useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

export function DeploysScreen(props: ScreenProps): React.ReactElement {
  const lastDeploy = [...props.events].reverse().find((e) => e.type === "deploy");
  const refresh = useRefreshKey(lastDeploy);
  const polled = usePoll(() => loadQueue(props.client), { intervalMs: POLL_MS, refreshKey: refresh.key });
  const now = useNow();
  const data = polled.data?.allowed ? polled.data.data : undefined;
  const queue = orderQueue(data?.items ?? []).filter((b) => matchesFilter(props.filter, [b.app, b.org, b.state, b.commit, b.builder]));
  const recent = (data?.recent ?? []).filter((b) => matchesFilter(props.filter, [b.app, b.org, b.status, b.commit, b.error]));
  const rows: DeployRow[] = [...queue.map((build) => ({ kind: "queue" as const, build })), ...recent.map((build) => ({ kind: "finished" as const, build }))];
  const sel = useSelection(rows);
  const questions = useQuestions();

  const cancel = (app: string) => questions.put(() => props.confirm(`cancel the build of ${app}?`, app, () => {
    void runAction(props, `cancelling the build of ${app}`, async () => {
      const r = await props.client.request<{ cancelled: { id: number | null; state: string }[] }>("POST", `/apps/${encodeURIComponent(app)}/builds/cancel`);
      return `${app}: cancelled ${r.cancelled.length} build${r.cancelled.length === 1 ? "" : "s"}`;
    }).then(refresh.bump);
  }));

  const latest = useLatest({ props, cancel });
  useInput((input, key) => {
    const { props, cancel } = latest.current;
    if (questions.swallow(key) || !props.keysLive()) return;
    if (sel.move(input, key)) return;
    const row = sel.now().row;
    if (!row) return;
    if (key.return) {
      const b = row.build;
      props.open("build", `${b.app}/${b.id ?? "latest"}`);
    } else if (input === "c" && !props.readonly && mayAct(props.me, row.build.org, "app:deploy")) {
      if (row.kind === "finished") notifyAfterKey(props, `build ${row.build.id} of ${row.build.app} has finished: nothing to cancel`, "error");
      else cancel(row.build.app);
    }
  });

  if (!polled.data) return statusLine(props, polled.error ?? "loading…", Boolean(polled.error));
  if (!polled.data.allowed) return statusLine(props, polled.data.message, true);
  const elapsedOf = (b: QueuedBuild) => b.elapsedSeconds + Math.max(0, (now - (polled.loadedAt ?? now)) / 1000);
  const width = props.width - 2;
  const lines: Line[] = [];
  const running = queue.filter((b) => b.state === "running").length;
  lines.push({ key: "queue", bold: true, text: queue.length ? `build queue: ${running} running, ${queue.length - running} waiting` : "build queue: empty" });
  const selected = rows[sel.at];
  if (queue.length) {
    const table = layoutTable(queueColumns(elapsedOf), queue, width);
    lines.push({ key: "queue-head", dim: true, text: "  " + table.header });
    table.lines.forEach((text, i) => {
      const mine = selected?.build === queue[i];
      lines.push({ key: `q${i}`, selected: mine, text: (mine ? "> " : "  ") + text });
    });
  }
  lines.push({ key: "recent", bold: true, text: recent.length ? `recent builds (${recent.length})` : "recent builds: none" });
  if (recent.length) {
    const table = layoutTable(recentColumns(now), recent, width);
    lines.push({ key: "recent-head", dim: true, text: "  " + table.header });
    table.lines.forEach((text, i) => {
      const b = recent[i]!;
      const mine = selected?.build === b;
      lines.push({ key: `r${i}`, selected: mine, color: b.status === "failed" ? "red" : undefined, text: (mine ? "> " : "  ") + text });
    });
  }
  const footer = polled.error ? [statusLine(props, polled.error, true)] : [];
  return h(Box, { flexDirection: "column" },
    renderLines(lines, { width: props.width, height: props.height - footer.length, color: props.color }),
    ...footer);
}

// ---------- one build's output ----------

/** `GET /apps/:app/builds/:id` without follow. */
interface BuildOutput { id: number | null; status: string; running: boolean; lines: string[] }

/** Where the build screen stands: reading, following a running build, or showing a finished one. */
type BuildState =
  | { name: "loading" }
  | { name: "following" }
  | { name: "ended" }
  | { name: "finished"; status: string }
  | { name: "failed"; message: string };

/** The most lines kept of one build (its oldest are dropped). */
const KEEP_LINES = 10_000;
const FLUSH_MS = 50;

/** "shop/42" or "shop/latest" → the app and the build. */
export function parseBuildArg(arg: string): { app: string; id: string } {
  const slash = arg.lastIndexOf("/");
  return slash === -1 ? { app: arg, id: "latest" } : { app: arg.slice(0, slash), id: arg.slice(slash + 1) || "latest" };
}

/** A line of build output as plain text: escape sequences and other control characters would break the layout. */
export function plainLine(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\u001B\[[0-9;?]*[A-Za-z]/g, "").replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, "").replace(/\t/g, "  ");
}

function describeBuildState(s: BuildState): string {
  switch (s.name) {
    case "loading": return "loading…";
    case "following": return "following (live)";
    case "ended": return "build finished";
    case "finished": return s.status;
    case "failed": return s.message;
  }
}

/** Reads a build: its whole output when it has finished, otherwise follows it live until it ends. */
function useBuildOutput(client: ApiClient, app: string, id: string): { lines: string[]; state: BuildState } {
  const [lines, setLines] = React.useState<string[]>([]);
  const [state, setState] = React.useState<BuildState>({ name: "loading" });
  React.useEffect(() => {
    const stop = new AbortController();
    const path = `/apps/${encodeURIComponent(app)}/builds/${encodeURIComponent(id)}`;
    // Lines can come by the thousand: they are shown a few times a second, not one render each.
    let buffer: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      timer = undefined;
      const fresh = buffer;
      buffer = [];
      if (fresh.length && !stop.signal.aborted) setLines((all) => [...all, ...fresh].slice(-KEEP_LINES));
    };
    const showWhole = (out: BuildOutput) => {
      setLines(out.lines.map(plainLine).slice(-KEEP_LINES));
      setState({ name: "finished", status: out.status });
    };
    void (async () => {
      try {
        const first = await client.request<BuildOutput>("GET", path);
        if (stop.signal.aborted) return;
        if (!first.running) return showWhole(first);
        // The stream starts from the build's first line.
        setState({ name: "following" });
        let ended = false;
        await client.followEvents(`${path}?follow=true`, (e) => {
          if (e.event === "end") ended = true;
          else if (e.event === "message") {
            buffer.push(plainLine(e.data));
            timer ??= setTimeout(flush, FLUSH_MS);
          }
        }, stop.signal);
        clearTimeout(timer);
        flush();
        if (stop.signal.aborted) return;
        if (ended) return setState({ name: "ended" });
        // The build finished between the two reads: deck answered with the whole output instead.
        showWhole(await client.request<BuildOutput>("GET", path));
      } catch (err) {
        if (!stop.signal.aborted) setState({ name: "failed", message: err instanceof Error ? err.message : String(err) });
      }
    })();
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, [client, app, id]);
  return { lines, state };
}

export function BuildScreen(props: ScreenProps & { app: string; id: string }): React.ReactElement {
  const { lines, state } = useBuildOutput(props.client, props.app, props.id);
  const visible = Math.max(1, props.height - 1);
  // The last line in view, or null to keep the newest line at the bottom as lines come. Scrolled
  // back, the view stays on the same lines while new ones arrive below.
  const [anchor, setAnchor] = React.useState<number | null>(null);
  const current = React.useRef({ anchor, count: lines.length });
  current.current = { anchor: current.current.anchor, count: lines.length };
  useInput((input, key) => {
    if (!props.keysLive()) return;
    const { anchor, count } = current.current;
    const scrollTo = (last: number) => {
      const next = last >= count ? null : Math.max(Math.min(visible, count), last);
      current.current = { anchor: next, count };
      setAnchor(next);
    };
    const last = anchor ?? count;
    if (key.upArrow || input === "k") scrollTo(last - 1);
    else if (key.downArrow || input === "j") scrollTo(last + 1);
    else if (key.pageUp) scrollTo(last - visible);
    else if (key.pageDown) scrollTo(last + visible);
    else if (input === "G") scrollTo(count);
  });

  const end = anchor === null ? lines.length : Math.min(anchor, lines.length);
  const start = Math.max(0, end - visible);
  const where = lines.length === 0 ? "no output yet" : end < lines.length ? `lines ${start + 1}–${end} of ${lines.length} (G: newest)` : `${lines.length} lines`;
  const title = `${props.app} build ${props.id} · ${describeBuildState(state)} · ${where}`;
  const tone = state.name === "failed" || (state.name === "finished" && state.status === "failed") ? "red" : state.name === "ended" ? "green" : undefined;
  return h(Box, { flexDirection: "column" },
    h(Text, { wrap: "truncate", bold: props.color, color: props.color ? tone : undefined }, truncateText(title, props.width)),
    ...lines.slice(start, end).map((l, i) => h(Text, { key: `${start + i}`, wrap: "truncate" }, truncateText(l, props.width) || " ")));
}

export const DEPLOYS_SCREEN: ScreenDef = {
  name: "deploys", aliases: ["d", "builds"], title: () => "deploys", component: DeploysScreen,
  keys: (p) => `Enter output${mayActSomewhere(p, "app:deploy") ? "  c cancel" : ""}`,
  help: (p) => [
    "Enter                        follow the selected build's output",
    ...(mayActSomewhere(p, "app:deploy") ? ["c                            cancel the selected app's build (type the app's name to confirm)"] : []),
  ],
};

export const BUILD_SCREEN: ScreenDef = {
  name: "build", title: (arg) => `build ${arg ?? ""}`, keys: "↑↓ scroll  G newest",
  component: (p) => h(BuildScreen, { ...p, ...parseBuildArg(p.arg ?? "") }),
  help: [
    "↑ ↓ (k j), PgUp PgDn         scroll the output back and forth",
    "G                            back to the newest lines",
  ],
};
