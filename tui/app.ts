/**
 * The dashboard's root: a header (deck's URL, the screen, the time), the current screen, and a footer
 * with the keys. `:` opens a command line, `/` filters, Enter drills in, Esc goes back, `?` shows
 * help, `q` quits.
 */
import React from "react";
import { Box, Text, useApp, useInput, useStdout, type Key } from "ink";
import type { ApiClient, DeckEvent } from "./api-client.ts";
import type { ScreenProps } from "./screen.ts";
import { AppDetailScreen } from "./screens/app-detail.ts";
import { AppsScreen } from "./screens/apps.ts";
import { OverviewScreen } from "./screens/overview.ts";
import { truncateText } from "./table.ts";

const h = React.createElement;

export type ListScreen = "overview" | "apps";
export type Screen = { name: ListScreen } | { name: "app"; app: string };

/** What the keyboard is typing into: nothing (keys act), the `:` command line, or the `/` filter. */
type Mode = { name: "keys" } | { name: "command"; text: string } | { name: "filter"; text: string };

export interface AppProps {
  client: ApiClient;
  color: boolean;
  readonly?: boolean;
  /** The first screen (the overview unless given). */
  start?: ListScreen;
  /** Called as the dashboard quits, before Ink unmounts it. */
  onExit?: () => void;
}

const COMMANDS: Record<string, ListScreen | "quit"> = {
  overview: "overview", o: "overview", home: "overview",
  apps: "apps", a: "apps",
  q: "quit", quit: "quit", "q!": "quit",
};

const KEEP_EVENTS = 50;

export const HELP_LINES = [
  ":apps, :a        the apps table",
  ":overview, :o    host, services, build queue, alerts, traffic",
  ":q               quit (also q)",
  "/TEXT            filter the list (Esc clears)",
  "Enter            open the selected app",
  "Esc              back",
  "s                sort the apps table (name, requests/s, p95, memory, last deploy)",
  "↑ ↓ (k j)        move the selection",
  "?                this help",
];

/** Keeps one screen's failure (an answer of an unexpected shape) on that screen, as one line, instead of blanking the terminal. */
class ScreenBoundary extends React.Component<{ children?: React.ReactNode }, { error: string | undefined }> {
  override state = { error: undefined as string | undefined };
  static getDerivedStateFromError(err: unknown): { error: string } {
    return { error: err instanceof Error ? err.message : String(err) };
  }
  override render(): React.ReactNode {
    return this.state.error === undefined ? this.props.children : h(Text, { wrap: "truncate" }, `this screen failed: ${this.state.error} (Esc or :overview)`);
  }
}

function screenTitle(s: Screen): string {
  return s.name === "app" ? `app ${s.app}` : s.name;
}

function useTerminalSize(): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const read = () => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const [size, setSize] = React.useState(read);
  React.useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on("resize", onResize);
    return () => void stdout.off("resize", onResize);
  }, [stdout]);
  return size;
}

function useClock(): Date {
  const [now, setNow] = React.useState(() => new Date());
  React.useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

function useEventStream(client: ApiClient): { events: DeckEvent[]; problem: string | undefined } {
  const [events, setEvents] = React.useState<DeckEvent[]>([]);
  const [problem, setProblem] = React.useState<string>();
  React.useEffect(() => {
    const stop = new AbortController();
    void client.events((e) => {
      setProblem(undefined);
      setEvents((all) => [...all.slice(-(KEEP_EVENTS - 1)), e]);
    }, stop.signal, (err) => setProblem(`events: ${err.message}`));
    return () => stop.abort();
  }, [client]);
  return { events, problem };
}

export function App(props: AppProps): React.ReactElement {
  const { exit } = useApp();
  const size = useTerminalSize();
  const now = useClock();
  const { events, problem } = useEventStream(props.client);
  const [stack, setStack] = React.useState<Screen[]>([{ name: props.start ?? "overview" }]);
  const [filters, setFilters] = React.useState<Record<string, string>>({});
  // Keys can arrive faster than React renders (a paste, a fast typist): the key handler reads and
  // writes the mode and help through refs so that each key sees the one before it.
  const [mode, setModeState] = React.useState<Mode>({ name: "keys" });
  const modeRef = React.useRef<Mode>(mode);
  const setMode = (m: Mode) => {
    modeRef.current = m;
    setModeState(m);
  };
  const [help, setHelpState] = React.useState(false);
  const helpRef = React.useRef(help);
  const setHelp = (v: boolean) => {
    helpRef.current = v;
    setHelpState(v);
  };
  const [notice, setNotice] = React.useState<string>();
  const screen = stack[stack.length - 1]!;
  const screenKey = screenTitle(screen);
  const filter = filters[screenKey] ?? "";

  const quit = () => {
    props.onExit?.();
    exit();
  };
  const go = (name: ListScreen) => setStack([{ name }]);
  const runCommand = (text: string) => {
    const target = COMMANDS[text.trim().toLowerCase()];
    if (target === "quit") quit();
    else if (target) go(target);
    else if (text.trim()) setNotice(`unknown command :${text.trim()} (try :apps, :overview, :q)`);
  };

  const onKey = (input: string, key: Key) => {
    const mode = modeRef.current;
    const help = helpRef.current;
    if (mode.name !== "keys") {
      if (key.escape) {
        setMode({ name: "keys" });
        if (mode.name === "filter") setFilters((f) => ({ ...f, [screenKey]: "" }));
      } else if (key.return) {
        setMode({ name: "keys" });
        if (mode.name === "command") runCommand(mode.text);
      } else if (key.backspace || key.delete) {
        const text = mode.text.slice(0, -1);
        setMode({ ...mode, text });
        if (mode.name === "filter") setFilters((f) => ({ ...f, [screenKey]: text }));
      } else if (input && !key.ctrl && !key.meta) {
        const text = mode.text + input;
        setMode({ ...mode, text });
        if (mode.name === "filter") setFilters((f) => ({ ...f, [screenKey]: text }));
      }
      return;
    }
    setNotice(undefined);
    if (input === "q") quit();
    else if (input === ":") setMode({ name: "command", text: "" });
    else if (input === "/") setMode({ name: "filter", text: filter });
    else if (input === "?") setHelp(!help);
    else if (key.escape) {
      if (help) setHelp(false);
      else if (filter) setFilters((f) => ({ ...f, [screenKey]: "" }));
      else if (stack.length > 1) setStack((s) => s.slice(0, -1));
    }
  };
  useInput((input, key) => {
    // Pasted text (or keys typed faster than the terminal is read) arrives as one chunk: take it a
    // character at a time, so ":apps⏎" runs the command.
    if (input.length > 1 && !key.ctrl && !key.meta) {
      for (const ch of input) onKey(ch, { ...key, return: ch === "\r" || ch === "\n", backspace: ch === "\x7f" || ch === "\b" });
    } else onKey(input, key);
  });

  const width = Math.max(20, size.columns);
  // Header, rule, and the two footer lines take four rows.
  const bodyHeight = Math.max(3, size.rows - 4);
  const screenProps: ScreenProps = {
    client: props.client, width, height: bodyHeight, color: props.color, filter, events,
    keysLive: () => modeRef.current.name === "keys" && !helpRef.current,
    openApp: (app) => setStack((s) => [...s, { name: "app", app }]),
  };
  const body = help
    ? h(Box, { flexDirection: "column" }, ...HELP_LINES.map((l) => h(Text, { key: l, wrap: "truncate" }, truncateText(l, width))))
    : screen.name === "app" ? h(AppDetailScreen, { ...screenProps, app: screen.app })
    : screen.name === "apps" ? h(AppsScreen, screenProps)
    : h(OverviewScreen, screenProps);

  const clock = now.toISOString().slice(11, 19) + " UTC";
  const title = `deck ${props.client.url} · ${screenTitle(screen)}${props.readonly ? " · read-only" : ""}`;
  const header = truncateText(title, Math.max(1, width - clock.length - 1)).padEnd(Math.max(1, width - clock.length - 1)) + " " + clock;
  const prompt = mode.name === "command" ? `:${mode.text}` : mode.name === "filter" ? `/${mode.text}` : notice ?? problem ?? (filter ? `filter: ${filter} (Esc clears)` : "");
  const keys = stack.length > 1 ? "q quit  : command  / filter  Enter open  Esc back  ? help" : "q quit  : command  / filter  Enter open  s sort  ? help";
  return h(Box, { flexDirection: "column", width },
    h(Text, { wrap: "truncate", bold: props.color, color: props.color ? "cyan" : undefined }, header),
    h(Text, { wrap: "truncate", dimColor: props.color }, "─".repeat(width)),
    h(Box, { flexDirection: "column", height: bodyHeight, overflow: "hidden" }, h(ScreenBoundary, { key: help ? "help" : screenKey }, body)),
    h(Text, { wrap: "truncate", color: props.color && (notice || problem) ? "yellow" : undefined }, truncateText(prompt, width) || " "),
    h(Text, { wrap: "truncate", dimColor: props.color }, truncateText(keys, width)));
}
