import { test } from "node:test";
import assert from "node:assert/strict";
import { DeckError } from "../core/index.ts";
import type { Caller, DeployDeps } from "../deploy/index.ts";
import { runCommand } from "./commands.ts";
import { describeCommandError } from "./errors.ts";

async function run(words: string[]): Promise<{ status: number; out: string[]; err: string[]; logs: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  // No database behind these deps: a command that reaches for it fails as deck would on a bug.
  const deps = { log: (line: string) => logs.push(line) } as unknown as DeployDeps;
  const caller = { actor: { isAdmin: false, roles: new Map() }, via: "ssh" } as unknown as Caller;
  const status = await runCommand(deps, caller, words, { out: (l) => out.push(l), err: (l) => err.push(l), signal: new AbortController().signal });
  return { status, out, err, logs };
}

test("a failed SSH command prints one line, deck: error (CODE): MESSAGE, and exits 1", async () => {
  const unknown = await run(["frobnicate", "web"]);
  assert.deepEqual([unknown.status, unknown.out, unknown.err], [1, [], ['deck: error (unknown_command): unknown command "frobnicate"; run `help` to list the commands']]);
  const missing = await run(["config:get", "web"]);
  assert.deepEqual([missing.status, missing.err], [1, ["deck: error (bad_argument): missing KEY; usage: config:get APP KEY"]]);
  const option = await run(["logs", "web", "--color"]);
  assert.deepEqual([option.status, option.err], [1, ["deck: error (bad_argument): unknown option --color; usage: logs APP [-n N] [-t]"]]);
  assert.deepEqual([...unknown.logs, ...missing.logs, ...option.logs], []);
});

test("an error deck did not expect prints an id to find its details in the log, and only there", async () => {
  const r = await run(["config:get", "web", "KEY"]);
  assert.equal(r.status, 1);
  assert.equal(r.err.length, 1);
  const m = /^deck: error \(internal\): config:get failed because of an internal error; the deck server log has the details \(id ([0-9a-f]{12})\)$/.exec(r.err[0]);
  assert.ok(m, r.err[0]);
  assert.equal(r.logs.length, 1);
  assert.ok(r.logs[0].startsWith(`command config:get failed (id ${m[1]}): TypeError: `), r.logs[0]);
});

test("a message spread over lines still prints as one line", () => {
  const r = describeCommandError(new DeckError("deploy_failed", "the build failed:\n  npm ERR! missing script: build\n"), "rollback");
  assert.deepEqual(r, { line: "deck: error (deploy_failed): the build failed: npm ERR! missing script: build" });
});
