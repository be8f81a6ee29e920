/**
 * The dashboard's root: a header (deck's URL, the screen, the time), the current screen, and a footer
 * with the keys. `:` opens a command line, `/` filters, Enter drills in, Esc goes back, `?` shows
 * help, `q` quits.
 */
import React from "react";
import { Box, Text, useApp, useInput, useStdout, type Key } from "ink";
import type { ApiClient, DeckEvent, Me } from "./api-client.ts";
import type { ScreenDef, ScreenProps } from "./screen.ts";
import { SCREENS } from "./screens/index.ts";
import { truncateText } from "./table.ts";

const h = React.createElement;

export type Screen = { name: string; arg?: string };

/** What the keyboard is typing into: nothing (keys act), the `:` command line, the `/` filter, or an answer to a question. */
type Mode =
  | { name: "keys" }
  | { name: "command"; text: string }
  | { name: "filter"; text: string }
  | { name: "ask"; text: string; prompt: string; onAnswer: (text: string) => void };

export interface AppProps {
  client: ApiClient;
  color: boolean;
  readonly?: boolean;
  /** The first screen (the overview unless given). */
  start?: string;
  /** Called as the dashboard quits, before Ink unmounts it. */
  onExit?: () => void;
  /** The screens it knows (the registry unless given: tests add their own). */
  screens?: readonly ScreenDef[];
}

/** The registry's lookups: screens by name (a later entry of a name replaces an earlier), and `:` commands to screen names. */
function indexScreens(list: readonly ScreenDef[]): { byName: Map<string, ScreenDef>; commands: Map<string, string>; help: string[] } {
  const byName = new Map<string, ScreenDef>(list.map((d) => [d.name, d]));
  const screens = [...byName.values()];
  const commands = new Map<string, string>();
  for (const d of screens) {
    if (d.aliases === undefined) continue;
    for (const c of [d.name, ...d.aliases]) commands.set(c, d.name);
  }
  const help = [
    `screens   ${screens.filter((d) => d.aliases !== undefined).map((d) => `:${d.name}${d.aliases!.length ? ` (:${d.aliases![0]})` : ""}`).join("  ")}`,
    "keys      /TEXT filter (Esc clears)  Enter open  Esc back or cancel  ↑↓ or j k move  ? help  q or :q quit",
  ];
  return { byName, commands, help };
}

/** Help lines cut to `width`: a long line goes on over the next lines, indented under its text (after its key column). */
function wrapHelp(lines: readonly string[], width: number): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const column = /^\S.*?\s{2,}/.exec(line)?.[0].length ?? 0;
    const indent = " ".repeat(Math.min(column, Math.floor(width / 2)));
    let rest = line;
    let room = width;
    while (rest.length > room && room >= 20) {
      // At the last space that leaves at least half the room filled; a word longer than that is cut.
      let cut = rest.lastIndexOf(" ", room);
      if (cut < room / 2) cut = room;
      out.push((out.length && rest !== line ? indent : "") + rest.slice(0, cut).trimEnd());
      rest = rest.slice(cut).trimStart();
      room = width - indent.length;
    }
    out.push((rest !== line ? indent : "") + rest);
  }
  return out;
}

const KEEP_EVENTS = 50;

const QUIT = new Set(["q", "quit", "q!"]);

export const HELP_LINES = indexScreens(SCREENS).help;

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

function screenTitle(s: Screen, byName: Map<string, ScreenDef>): string {
  const def = byName.get(s.name);
  return def?.title ? def.title(s.arg) : s.arg ? `${s.name} ${s.arg}` : s.name;
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

function useMe(client: ApiClient): Me | undefined {
  const [me, setMe] = React.useState<Me>();
  React.useEffect(() => {
    let live = true;
    setMe(undefined);
    // Without an answer the screens show no action keys: the safe side.
    void client.me().then((m) => live && setMe(m), () => undefined);
    return () => void (live = false);
  }, [client]);
  return me;
}

export function App(props: AppProps): React.ReactElement {
  const { byName, commands: COMMANDS, help: HELP } = React.useMemo(() => indexScreens(props.screens ?? SCREENS), [props.screens]);
  const { exit } = useApp();
  const size = useTerminalSize();
  const now = useClock();
  const [viewAs, setViewAs] = React.useState<string>();
  const client = React.useMemo(() => (viewAs ? props.client.as(viewAs) : props.client), [props.client, viewAs]);
  const { events, problem } = useEventStream(client);
  const me = useMe(client);
  const readonly = Boolean(props.readonly || viewAs);
  const [stack, setStack] = React.useState<Screen[]>([{ name: props.start && byName.has(props.start) ? props.start : "overview" }]);
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
  const consumed = React.useRef(false);
  const [notice, setNoticeState] = React.useState<{ text: string; tone?: "ok" | "error" }>();
  const setNotice = (text: string | undefined, tone?: "ok" | "error") => setNoticeState(text === undefined ? undefined : { text, tone });
  const screen = stack[stack.length - 1]!;
  const screenKey = screenTitle(screen, byName);
  const filter = filters[screenKey] ?? "";

  const quit = () => {
    props.onExit?.();
    exit();
  };
  const runCommand = (text: string) => {
    const word = text.trim().toLowerCase();
    const target = COMMANDS.get(word);
    if (QUIT.has(word)) quit();
    else if (target) setStack([{ name: target }]);
    else if (word) setNotice(`unknown command :${text.trim()} (try ${[...COMMANDS.keys()].filter((c) => byName.has(c)).map((c) => ":" + c).join(", ")}, :q)`);
  };

  const onKey = (input: string, key: Key) => {
    const mode = modeRef.current;
    const help = helpRef.current;
    if (mode.name !== "keys") {
      // This key belongs to the line being typed: a screen's handler that runs after this one must not act on it too.
      consumed.current = true;
      queueMicrotask(() => void (consumed.current = false));
      if (key.escape) {
        setMode({ name: "keys" });
        if (mode.name === "filter") setFilters((f) => ({ ...f, [screenKey]: "" }));
        if (mode.name === "ask") setNotice("cancelled");
      } else if (key.return) {
        setMode({ name: "keys" });
        if (mode.name === "command") runCommand(mode.text);
        if (mode.name === "ask") {
          setNotice(undefined);
          mode.onAnswer(mode.text);
        }
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
  const open = (name: string, arg?: string) => setStack((s) => [...s, { name, ...(arg === undefined ? {} : { arg }) }]);
  // The question opens after every handler of the key that asked it has run: otherwise the root's
  // handler, running after the screen's, would type that key into the answer.
  const ask = (prompt: string, onAnswer: (text: string) => void) => queueMicrotask(() => setMode({ name: "ask", text: "", prompt, onAnswer }));
  const screenProps: ScreenProps = {
    client, width, height: bodyHeight, color: props.color, filter, events, readonly, me,
    keysLive: () => modeRef.current.name === "keys" && !helpRef.current && !consumed.current,
    openApp: (app) => open("app", app),
    open,
    ask,
    confirm: (prompt, expect, run) => ask(`${prompt} (type ${expect} to confirm, Esc cancels): `, (text) => {
      if (text.trim() === expect) run();
      else setNotice(`not confirmed: you typed "${text.trim()}", not ${expect}; nothing changed`, "error");
    }),
    // After every handler of the current key: the root clears the footer's notice on each key.
    notify: (text, tone) => queueMicrotask(() => setNotice(text, tone)),
    setViewAs: (email) => queueMicrotask(() => {
      setViewAs(email);
      setStack([{ name: "apps" }]);
      setNotice(email ? `viewing as ${email}: read-only (:support, then x, to stop)` : "back to your own view", "ok");
    }),
  };
  const def = byName.get(screen.name) ?? byName.get("overview")!;
  const keyContext = { readonly, me, viewAs, arg: screen.arg };
  // This screen's keys first, then the grammar every screen shares.
  const helpLines = [...(typeof def.help === "function" ? def.help(keyContext) : def.help ?? []), "", ...HELP];
  const body = help
    ? h(Box, { flexDirection: "column" }, ...wrapHelp(helpLines, width).slice(0, bodyHeight).map((l, i) => h(Text, { key: `${i}`, wrap: "truncate" }, truncateText(l, width) || " ")))
    : h(def.component, { ...screenProps, ...(screen.arg === undefined ? {} : { arg: screen.arg }) });

  const clock = now.toISOString().slice(11, 19) + " UTC";
  const title = `deck ${props.client.url} · ${screenTitle(screen, byName)}${viewAs ? ` · viewing as ${viewAs}` : ""}${readonly ? " · read-only" : ""}`;
  const header = truncateText(title, Math.max(1, width - clock.length - 1)).padEnd(Math.max(1, width - clock.length - 1)) + " " + clock;
  const prompt = mode.name === "command" ? `:${mode.text}` : mode.name === "filter" ? `/${mode.text}` : mode.name === "ask" ? `${mode.prompt}${mode.text}`
    : notice?.text ?? problem ?? (filter ? `filter: ${filter} (Esc clears)` : "");
  const own = typeof def.keys === "function" ? def.keys(keyContext) : def.keys;
  const keys = `q quit  : command  / filter${stack.length > 1 ? "  Esc back" : ""}  ? help${own ? "  " + own : ""}`;
  const promptColor = !props.color ? undefined : mode.name === "ask" ? "magenta" : notice?.tone === "error" ? "red" : notice?.tone === "ok" ? "green" : notice || problem ? "yellow" : undefined;
  return h(Box, { flexDirection: "column", width },
    h(Text, { wrap: "truncate", bold: props.color, color: props.color ? (viewAs ? "magenta" : "cyan") : undefined }, header),
    h(Text, { wrap: "truncate", dimColor: props.color }, "─".repeat(width)),
    h(Box, { flexDirection: "column", height: bodyHeight, overflow: "hidden" }, h(ScreenBoundary, { key: help ? "help" : screenKey }, body)),
    h(Text, { wrap: "truncate", color: promptColor }, truncateText(prompt, width) || " "),
    h(Text, { wrap: "truncate", dimColor: props.color }, truncateText(keys, width)));
}
