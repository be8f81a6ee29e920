import { DeckError } from "../core/index.ts";
import {
  addDrain, isPlainLogQuery, listDrains, logRetention, readAppLog, removeDrain, searchAppLog, type DrainView, type LogQuery, type RetentionReport,
} from "../ops/index.ts";
import { defineCommands, pad, type Args } from "./command-kit.ts";

/** SSH commands for log search, retention and drains. */

const LOGS_USAGE = "logs APP [-n N] [-t] [--since|--grep|--process|--source ...] [--json]";

function lineCount(args: Args): number {
  const rawN = (args.flags.get("-n") ?? args.flags.get("--num") ?? "100") as string;
  if (!/^\d{1,6}$/.test(rawN)) throw new DeckError("bad_argument", `-n needs a number of lines, got "${rawN.slice(0, 20)}"`);
  return Number(rawN);
}

function queryOf(args: Args): LogQuery {
  const get = (flag: string) => args.flags.get(flag) as string | undefined;
  return {
    ...(get("--since") !== undefined ? { since: get("--since") } : {}),
    ...(get("--grep") !== undefined ? { grep: get("--grep") } : {}),
    ...(get("--process") !== undefined ? { process: get("--process") } : {}),
    ...(get("--source") !== undefined ? { source: get("--source") } : {}),
  };
}

const mib = (bytes: number) => `${Number((bytes / 1024 / 1024).toFixed(1))} MiB`;
const days = (seconds: number) => (seconds % 86_400 === 0 ? `${seconds / 86_400}d` : seconds % 3600 === 0 ? `${seconds / 3600}h` : `${seconds}s`);
const when = (iso: string | null) => (iso === null ? "" : `${iso.slice(0, 19).replace("T", " ")} `);

function retentionLines(r: RetentionReport): string[] {
  return [
    `=== ${r.app} log retention`,
    `size: ${mib(r.size.value)}${r.size.default ? " (default)" : ""}`,
    `age:  ${days(r.age.value)}${r.age.default ? " (default)" : ""}`,
  ];
}

function drainRow(d: DrainView): string[] {
  return [String(d.id), d.url, d.sources.join(","), String(d.delivered), String(d.dropped), d.lastError === null ? "-" : `${when(d.lastErrorAt)}${d.lastError}`];
}

defineCommands({
  logs: {
    usage: LOGS_USAGE,
    help: "show app and build output; --since 1h, --grep TEXT (any case), --process web.1, --source app|deck|router|all narrow it (router: the app's requests); -t follows",
    flags: ["-n", "--num", "--since", "--grep", "--process", "--source"], bools: ["-t", "--tail", "--json"],
    run: async (deps, caller, args, io) => {
      const name = args.app(LOGS_USAGE);
      const n = lineCount(args);
      const follow = args.flags.has("-t") || args.flags.has("--tail");
      const query = queryOf(args);
      if (isPlainLogQuery(query) && !args.json) {
        const log = await readAppLog(deps, caller, name, n);
        for (const l of log.lines) io.out(l);
        if (follow) await log.follow(io.out, io.signal);
        return;
      }
      const found = await searchAppLog(deps, caller, name, query, n);
      const show = args.json
        ? (e: (typeof found.entries)[number]) => io.out(JSON.stringify({ time: e.time, source: e.source, process: e.process, text: e.text, ...(e.request ? { request: e.request } : {}) }))
        : (e: (typeof found.entries)[number]) => io.out(e.line);
      for (const e of found.entries) show(e);
      if (found.unsearched) io.err(`deck: ${found.unsearched}`);
      if (follow) await found.follow(show, io.signal);
    },
  },
  "logs:retention": {
    usage: "logs:retention APP [--size 100m] [--age 14d] [--json]",
    help: "how much of the app's log deck keeps (newest lines, by size and age); a value of default returns to the server default",
    flags: ["--size", "--age"], bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const name = args.app("logs:retention APP [--size 100m] [--age 14d]");
      const size = args.flags.get("--size") as string | undefined;
      const age = args.flags.get("--age") as string | undefined;
      const r = await logRetention(deps, caller, name, { ...(size !== undefined ? { size } : {}), ...(age !== undefined ? { age } : {}) });
      if (args.json) return io.out(JSON.stringify(r));
      for (const l of retentionLines(r)) io.out(l);
    },
  },
  "drains:add": {
    usage: "drains:add APP URL [--source app,deck,router|all]",
    help: "ship the app's log lines as they are written to syslog+tls://HOST:PORT, syslog://HOST:PORT or https://URL",
    flags: ["--source"],
    run: async (deps, caller, args, io) => {
      const usage = "drains:add APP URL [--source app,deck,router|all]";
      const name = args.app(usage);
      const [url, extra] = args.positional.slice(1);
      if (!url) throw new DeckError("bad_argument", `missing URL; usage: ${usage}`);
      if (extra !== undefined) throw new DeckError("bad_argument", `too many arguments; usage: ${usage}`);
      const d = await addDrain(deps, caller, name, url, args.flags.get("--source") as string | undefined);
      io.out(`added drain ${d.id} to ${name}: ${d.url} (${d.sources.join(",")} lines from now on)`);
    },
  },
  "drains:list": {
    usage: "drains:list APP [--json]", help: "the app's drains: lines delivered and dropped, and the last error", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const name = args.app("drains:list APP");
      const drains = await listDrains(deps, caller, name);
      if (args.json) return io.out(JSON.stringify(drains));
      if (drains.length === 0) return io.out(`no drains; add one with drains:add ${name} syslog+tls://HOST:PORT`);
      for (const l of pad([["ID", "URL", "SOURCES", "DELIVERED", "DROPPED", "LAST ERROR"], ...drains.map(drainRow)])) io.out(l);
    },
  },
  "drains:remove": {
    usage: "drains:remove APP ID", help: "stop shipping the app's lines to a drain",
    run: async (deps, caller, args, io) => {
      const name = args.app("drains:remove APP ID");
      const id = args.positional[1];
      if (!id) throw new DeckError("bad_argument", "missing ID; usage: drains:remove APP ID (drains:list APP shows the ids)");
      await removeDrain(deps, caller, name, id);
      io.out(`removed drain ${id} from ${name}`);
    },
  },
});
