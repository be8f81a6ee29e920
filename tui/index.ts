/**
 * `deck tui`: the admin dashboard in a terminal. It is a client of deck's REST API only, so it runs
 * wherever the API is reachable with a token.
 */
import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import React from "react";
import { render } from "ink";
import { createApiClient } from "./api-client.ts";
import { App } from "./app.ts";

export { createApiClient, ApiError, TOKEN_REFUSED } from "./api-client.ts";
export type { ApiClient, ApiClientOptions, AppMetrics, AppSummary, DeckEvent, Deployment, Health, MetricPoint } from "./api-client.ts";
export { App, type AppProps } from "./app.ts";

export const DEFAULT_URL = "http://127.0.0.1:3000";

export const TUI_HELP = `usage: deck tui [--url URL] [--token TOKEN] [--readonly]

The admin dashboard: host and service health, every app's traffic, latency, memory and deploys,
the build queue, alerts, security, users, organisations, billing and support, live. It talks to
deck's REST API only.

  --url URL        deck's API (default ${DEFAULT_URL})
  --token TOKEN    an API token; otherwise $DECK_TOKEN, otherwise ~/.config/deck/token
                   (a file only you may read: chmod 600 ~/.config/deck/token)
  --readonly       show only; never change anything
  --help           this help

Screens: :overview :apps :deploys :alerts :security :audit :users :orgs :billing :support
Keys: / filter   Enter open   Esc back   ? help (each screen's keys)   :q or q quit
Colours are off when NO_COLOR is set or the output is not a terminal.`;

export interface TuiIo {
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
  home: string;
}

export type TokenResult = { ok: true; token: string } | { ok: false; message: string };

/** The token from `--token`, then `DECK_TOKEN`, then `~/.config/deck/token` (which must not be readable by others). */
export async function resolveToken(flag: string | undefined, env: NodeJS.ProcessEnv, home: string): Promise<TokenResult> {
  if (flag) return { ok: true, token: flag };
  if (env.DECK_TOKEN) return { ok: true, token: env.DECK_TOKEN };
  const file = join(home, ".config", "deck", "token");
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch {
    return { ok: false, message: `no token: pass --token, set DECK_TOKEN, or save one in ${file} (chmod 600)` };
  }
  // Like ssh with a private key: a token others can read is not used.
  if (mode & 0o077) return { ok: false, message: `${file} may be read by others; run chmod 600 ${file}` };
  const token = (await readFile(file, "utf8")).trim();
  return token ? { ok: true, token } : { ok: false, message: `${file} is empty` };
}

/** Runs the dashboard until the user quits; returns the exit code. */
export async function runTui(argv: string[], io: TuiIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, home: homedir() }): Promise<number> {
  let values: { url?: string; token?: string; readonly?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: {
      url: { type: "string" }, token: { type: "string" }, readonly: { type: "boolean" }, help: { type: "boolean", short: "h" },
    } }));
  } catch (err) {
    io.stderr.write(`deck tui: ${(err as Error).message.split("\n")[0]} (see deck tui --help)\n`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(TUI_HELP + "\n");
    return 0;
  }
  if (!io.stdin.isTTY) {
    io.stderr.write("deck tui needs a terminal; use the API (or ssh deck@HOST …) from scripts\n");
    return 2;
  }
  const url = values.url ?? DEFAULT_URL;
  try {
    new URL(url);
  } catch {
    io.stderr.write(`deck tui: --url ${url} is not a URL (like ${DEFAULT_URL})\n`);
    return 2;
  }
  const token = await resolveToken(values.token, io.env, io.home);
  if (!token.ok) {
    io.stderr.write(`deck tui: ${token.message}\n`);
    return 2;
  }
  const color = !io.env.NO_COLOR && Boolean(io.stdout.isTTY);
  const client = createApiClient({ url, token: token.token });
  const ink = render(React.createElement(App, { client, color, readonly: values.readonly ?? false }), { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, exitOnCtrlC: true });
  await ink.waitUntilExit();
  return 0;
}
