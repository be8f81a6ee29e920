import { DeckError } from "../core/index.ts";
import type { Caller, DeployDeps } from "../ops/index.ts";

/**
 * What every SSH command is made of. The core commands are in commands.ts; a feature's commands sit in
 * a file of their own (commands-FEATURE.ts) and join the table through `defineCommands`.
 */

export interface CommandIO {
  out(line: string): void;
  err(line: string): void;
  /** Bytes as they are, for a file on standard output (`billing:invoice … --pdf > invoice.pdf`). */
  write?(bytes: Buffer): void;
  /** Aborted when the client disconnects (ends `logs -t`). */
  signal: AbortSignal;
  /** Everything the client sends on standard input (for keys:add). */
  stdin?: () => Promise<string>;
  /** The client asked for a terminal (`ssh -t`): output may draw (sparklines); otherwise plain lines. */
  tty?: boolean;
}

export interface CommandSpec {
  usage: string;
  /** Reads standard input (otherwise the command does not wait for it). */
  stdin?: boolean;
  help: string;
  run(deps: DeployDeps, caller: Caller, args: Args, io: CommandIO): Promise<number | void>;
  /** Flags that take a value (`-n 100`). */
  flags?: string[];
  /** Flags on their own (`--json`). */
  bools?: string[];
}

/** Parsed arguments: positionals plus the flags a command declared. */
export class Args {
  readonly positional: string[] = [];
  readonly flags = new Map<string, string | true>();
  constructor(words: string[], valueFlags: string[], boolFlags: string[], usage: string) {
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (valueFlags.includes(w)) {
        if (i + 1 >= words.length) throw new DeckError("bad_argument", `${w} needs a value; usage: ${usage}`);
        this.flags.set(w, words[++i]);
      } else if (boolFlags.includes(w)) this.flags.set(w, true);
      else if (w.startsWith("-") && w.length > 1 && !/^-\d/.test(w)) throw new DeckError("bad_argument", `unknown option ${w.slice(0, 30)}; usage: ${usage}`);
      else this.positional.push(w);
    }
  }
  app(usage: string): string {
    const a = this.positional[0];
    if (!a) throw new DeckError("bad_argument", `missing app name; usage: ${usage}`);
    return a;
  }
  get json(): boolean {
    return this.flags.has("--json");
  }
}

/** Exactly the named positionals (`ORG`, `ID`): one missing or one too many is a one-line error with the usage. */
export function positionals(args: Args, names: string[], usage: string): string[] {
  const given = args.positional;
  const missing = names[given.length];
  if (missing) throw new DeckError("bad_argument", `missing ${missing}; usage: ${usage}`);
  if (given.length > names.length) throw new DeckError("bad_argument", `unexpected argument "${given[names.length]!.slice(0, 40)}"; usage: ${usage}`);
  return given;
}

export const pad = (rows: string[][]): string[] => {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd());
};


/** Commands defined beside their feature, by name. */
export const EXTRA_COMMANDS: Record<string, CommandSpec> = {};

/** Adds a feature's commands to the table; a name taken twice is a mistake caught at start. */
export function defineCommands(commands: Record<string, CommandSpec>): void {
  for (const [name, spec] of Object.entries(commands)) {
    if (EXTRA_COMMANDS[name]) throw new Error(`command ${name} is defined twice`);
    EXTRA_COMMANDS[name] = spec;
  }
}
