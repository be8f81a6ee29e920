import { DeckError } from "../core/index.ts";
import { RULE_FORMS } from "../core/alerts.ts";
import { addAlertRule, alertsOf, parseOnOff, removeAlertRule, setAlertRollback, silenceAlerts } from "../ops/alerts.ts";
import { defineCommands, pad } from "./command-kit.ts";

/** SSH commands for an app's alert rules (ops/alerts.ts). */

const time = (iso: string) => `${iso.slice(0, 19).replace("T", " ")} UTC`;

defineCommands({
  "alerts:list": {
    usage: "alerts:list APP [--json]", help: "an app's alert rules (defaults: down, crash_loop) and where each stands: ok, pending, firing or silenced", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const v = await alertsOf(deps, caller, args.app("alerts:list APP [--json]"));
      if (args.json) return io.out(JSON.stringify(v));
      io.out(`${v.app}: notices ${v.silencedUntil ? `silenced until ${time(v.silencedUntil)}` : "on"}; rollback on alert ${v.autoRollback ? "on" : "off"}`);
      if (v.rules.length === 0) return io.out(`no alert rules (add one: alerts:add ${v.app} RULE)`);
      const rows = v.rules.map((r) => [r.id, r.rule + (r.default ? " (default)" : ""), r.state, r.since ? time(r.since) : "-", r.value ?? "-"]);
      for (const l of pad([["ID", "RULE", "STATE", "SINCE", "VALUE"], ...rows])) io.out(l);
    },
  },
  "alerts:add": {
    usage: "alerts:add APP RULE", help: `add an alert rule; rules look like: ${RULE_FORMS}`,
    run: async (deps, caller, args, io) => {
      const usage = "alerts:add APP RULE";
      const name = args.app(usage);
      const text = args.positional.slice(1).join(" ");
      if (!text) throw new DeckError("bad_argument", `missing rule; usage: ${usage} (rules look like: ${RULE_FORMS})`);
      const r = await addAlertRule(deps, caller, name, text);
      io.out(`added alert rule ${r.id} to ${name}: ${r.rule}${r.replaced ? ` (replaces the default ${r.replaced})` : ""}`);
    },
  },
  "alerts:remove": {
    usage: "alerts:remove APP ID", help: "remove an alert rule (its id from alerts:list; a default by its name)",
    run: async (deps, caller, args, io) => {
      const usage = "alerts:remove APP ID";
      const name = args.app(usage);
      const id = args.positional[1];
      if (!id || args.positional.length > 2) throw new DeckError("bad_argument", `give one rule id; usage: ${usage}`);
      const r = await removeAlertRule(deps, caller, name, id);
      io.out(`removed alert rule ${r.id} (${r.rule}) from ${name}`);
    },
  },
  "alerts:silence": {
    usage: "alerts:silence APP DURATION|off", help: "hold an app's alert notices for a while (30m, 2h, 1d; rules are still judged), or end the silence",
    run: async (deps, caller, args, io) => {
      const usage = "alerts:silence APP DURATION|off";
      const name = args.app(usage);
      const d = args.positional[1];
      if (!d || args.positional.length > 2) throw new DeckError("bad_argument", `give a duration (30m, 2h, 1d) or off; usage: ${usage}`);
      const r = await silenceAlerts(deps, caller, name, d);
      io.out(r.silencedUntil ? `${r.app}: alert notices silenced until ${time(r.silencedUntil)}` : `${r.app}: alert notices on again`);
    },
  },
  "alerts:rollback": {
    usage: "alerts:rollback APP on|off", help: "roll an app back to its previous release when an alert fires within 10 minutes of a deploy",
    run: async (deps, caller, args, io) => {
      const usage = "alerts:rollback APP on|off";
      const name = args.app(usage);
      if (args.positional.length > 2) throw new DeckError("bad_argument", `say on or off; usage: ${usage}`);
      const r = await setAlertRollback(deps, caller, name, parseOnOff(args.positional[1], usage));
      io.out(r.autoRollback
        ? `${r.app}: rollback on alert on: an alert firing within 10 minutes of a deploy rolls back to the release before it (once per release)`
        : `${r.app}: rollback on alert off`);
    },
  },
});
