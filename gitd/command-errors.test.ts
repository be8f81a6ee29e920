import { test } from "node:test";
import assert from "node:assert/strict";
import { DeckError, type ErrorCode } from "../core/index.ts";
import type { Caller, DeployDeps } from "../ops/index.ts";
import { describeCommandError } from "./command-errors.ts";
import { runCommand } from "./commands.ts";

async function run(words: string[], db?: unknown): Promise<{ status: number; out: string[]; err: string[]; logs: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  // No database behind these deps unless given: a command that reaches for it fails as deck would on a bug.
  const deps = { db, log: (line: string) => logs.push(line) } as unknown as DeployDeps;
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
  assert.deepEqual([option.status, option.err], [1, ["deck: error (bad_argument): unknown option --color; usage: logs APP [-n N] [-t] [--since|--grep|--process|--source ...] [--json]"]]);
  assert.deepEqual([...unknown.logs, ...missing.logs, ...option.logs], []);
});

test("an error deck did not expect prints an id to find its details in the log, and only there", async () => {
  const r = await run(["config:get", "web", "KEY"]);
  assert.equal(r.status, 1);
  assert.equal(r.err.length, 1);
  const m = /^deck: error \(internal\): deck could not complete config:get because of an error on its side; a platform admin finds the details in the deck server log under request id ([0-9a-f]{12})$/.exec(r.err[0]);
  assert.ok(m, r.err[0]);
  assert.equal(r.logs.length, 1);
  assert.ok(r.logs[0].startsWith(`command config:get failed (id ${m[1]}): TypeError: `), r.logs[0]);
});

test("a message spread over lines still prints as one line", () => {
  const r = describeCommandError(new DeckError("deploy_failed", "the build failed:\n  npm ERR! missing script: build\n"), "rollback");
  assert.deepEqual(r, { line: "deck: error (deploy_failed): the build failed: npm ERR! missing script: build" });
});

const INTERNAL = "cannot decrypt with the key at /var/lib/deck/keys/master.key";

test("an error whose message the API hides is hidden over SSH too: its code, the API's generic message and an id; the log has the rest", () => {
  const hidden = describeCommandError(new DeckError("secret_corrupt", `a stored config value cannot be decrypted: ${INTERNAL}`), "config:show", () => "0123456789ab");
  assert.deepEqual(hidden.line, "deck: error (secret_corrupt): deck could not complete config:show because of an error on its side; a platform admin finds the details in the deck server log under request id 0123456789ab");
  assert.ok(hidden.log?.startsWith("command config:show failed (id 0123456789ab): secret_corrupt: "), hidden.log);
  assert.ok(hidden.log?.includes(INTERNAL), hidden.log);

  const undeclared = describeCommandError(new DeckError("made_up_code" as ErrorCode, `an undeclared code: ${INTERNAL}`), "ps:stop", () => "ba9876543210");
  assert.equal(undeclared.line, "deck: error (internal): deck could not complete ps:stop because of an error on its side; a platform admin finds the details in the deck server log under request id ba9876543210");
  assert.ok(!undeclared.line.includes("made_up_code") && !undeclared.line.includes("master.key"));
  assert.ok(undeclared.log?.includes(`undeclared error code made_up_code: DeckError: an undeclared code: ${INTERNAL}`), undeclared.log);

  // A code whose message is shown prints it, as the API does, and logs nothing.
  assert.deepEqual(describeCommandError(new DeckError("app_not_found", 'app "shop" does not exist (see apps:list)'), "ps:report"), { line: 'deck: error (app_not_found): app "shop" does not exist (see apps:list)' });
});

test("a command whose error the API would hide prints the same generic line and an id; the deck server log has the details under it", async () => {
  // The database goes away under the command: its address is deck's business, not the caller's.
  const db = { maybeOne: async () => { throw new DeckError("database_unreachable", `cannot connect to PostgreSQL at postgres://deck@10.0.0.5/deck: ${INTERNAL}`); } };
  const r = await run(["config:show", "web"], db);
  assert.equal(r.status, 1);
  assert.equal(r.err.length, 1);
  const m = /^deck: error \(database_unreachable\): deck could not complete config:show because of an error on its side; a platform admin finds the details in the deck server log under request id ([0-9a-f]{12})$/.exec(r.err[0]);
  assert.ok(m, r.err[0]);
  assert.equal(r.logs.length, 1);
  assert.ok(r.logs[0].startsWith(`command config:show failed (id ${m[1]}): database_unreachable: `), r.logs[0]);
  assert.ok(r.logs[0].includes("10.0.0.5") && r.logs[0].includes(INTERNAL), r.logs[0]);
});
