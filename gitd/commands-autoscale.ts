import { DeckError, describeTargets, parseP95Target, parsePercentTarget, parseRateTarget, type AutoscaleSettings } from "../core/index.ts";
import { autoscaleOf, disableAutoscale, setAutoscale } from "../ops/autoscale.ts";
import { defineCommands, pad, positionals, type Args } from "./command-kit.ts";

/** SSH commands for autoscaling an app's process types (ops/autoscale.ts; monitor/autoscale decides). */

const USAGE = "ps:autoscale APP [TYPE --min N --max M [--p95 300ms] [--cpu 70%] [--rps 50]] [--json]";
const TARGET_FLAGS = ["--min", "--max", "--p95", "--cpu", "--rps"];
const time = (iso: string) => `${iso.slice(0, 19).replace("T", " ")} UTC`;

/** A flag's value read by `parse`; null when the flag is absent; a one-line error naming it when unreadable. */
function target(args: Args, flag: string, parse: (raw: string) => number | null, example: string): number | null {
  const raw = args.flags.get(flag);
  if (raw === undefined) return null;
  const v = typeof raw === "string" ? parse(raw) : null;
  if (v === null) throw new DeckError("bad_argument", `${flag} takes a value like ${example}, got "${String(raw).slice(0, 20)}"; usage: ${USAGE}`);
  return v;
}

const count = (raw: string) => (/^\d{1,3}$/.test(raw) ? Number(raw) : null);

/** The settings `ps:autoscale APP TYPE --min … --max …` asks for. */
function settingsOf(args: Args, type: string): AutoscaleSettings {
  for (const flag of ["--min", "--max"]) if (!args.flags.has(flag)) throw new DeckError("bad_argument", `missing ${flag}; usage: ${USAGE}`);
  return {
    type,
    min: target(args, "--min", count, "1")!,
    max: target(args, "--max", count, "4")!,
    p95Ms: target(args, "--p95", parseP95Target, "300ms"),
    cpuPercent: target(args, "--cpu", parsePercentTarget, "70%"),
    rps: target(args, "--rps", parseRateTarget, "50"),
  };
}

defineCommands({
  "ps:autoscale": {
    usage: USAGE, flags: TARGET_FLAGS, bools: ["--json"],
    help: "scale a process type between --min and --max on targets (p95 response time, CPU per process, requests/s per process), or show an app's autoscaling and deck's last decisions",
    run: async (deps, caller, args, io) => {
      const name = args.app(USAGE);
      const type = args.positional[1];
      if (args.positional.length > 2) throw new DeckError("bad_argument", `unexpected argument "${args.positional[2]!.slice(0, 40)}"; usage: ${USAGE}`);
      if (type === undefined) {
        const given = TARGET_FLAGS.find((f) => args.flags.has(f));
        if (given) throw new DeckError("bad_argument", `${given} needs a process type before it; usage: ${USAGE}`);
        return show(await autoscaleOf(deps, caller, name), args.json, io.out);
      }
      if (args.json) throw new DeckError("bad_argument", `--json goes with ps:autoscale APP alone; usage: ${USAGE}`);
      const v = await setAutoscale(deps, caller, name, settingsOf(args, type));
      io.out(`${name}: ${v.type} autoscales between ${v.min} and ${v.max} processes on ${describeTargets(v)} (now ${v.current}; checked every ${deps.config.autoscaleInterval}s)`);
    },
  },
  "ps:autoscale:off": {
    usage: "ps:autoscale:off APP TYPE", help: "stop autoscaling a process type; its processes stay as they are",
    run: async (deps, caller, args, io) => {
      const [name, type] = positionals(args, ["APP", "TYPE"], "ps:autoscale:off APP TYPE");
      const r = await disableAutoscale(deps, caller, name!, type!);
      io.out(`${r.app}: ${r.type} no longer autoscales; it keeps ${r.current} process${r.current === 1 ? "" : "es"} (ps:scale changes them)`);
    },
  },
});

function show(v: Awaited<ReturnType<typeof autoscaleOf>>, json: boolean, out: (line: string) => void): void {
  if (json) return out(JSON.stringify(v));
  if (v.types.length === 0 && v.decisions.length === 0) {
    return out(`${v.app} does not autoscale; turn it on with ps:autoscale ${v.app} web --min 1 --max 4 --p95 300ms`);
  }
  out(`=== ${v.app} autoscaling (checked every ${v.intervalSeconds}s)`);
  if (v.types.length === 0) out("no process type autoscales now");
  else for (const l of pad([["TYPE", "NOW", "MIN", "MAX", "TARGETS"], ...v.types.map((t) => [t.type, String(t.current), String(t.min), String(t.max), describeTargets(t)])])) out(l);
  out("");
  out("=== Decisions (newest first)");
  if (v.decisions.length === 0) return out("none yet");
  const rows = v.decisions.map((d) => [time(d.at), d.type, `${d.from} → ${d.to}`, d.status, d.error ? `${d.reason}; failed: ${d.error}` : d.reason]);
  for (const l of pad([["TIME", "TYPE", "CHANGE", "RESULT", "WHY"], ...rows])) out(l);
}
