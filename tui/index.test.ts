import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { resolveToken, runTui, type TuiIo } from "./index.ts";

function fakeIo(options: { tty: boolean; env?: NodeJS.ProcessEnv; home?: string }): { io: TuiIo; out: () => string; err: () => string } {
  let out = "";
  let err = "";
  const stdin = Object.assign(new PassThrough(), { isTTY: options.tty }) as unknown as NodeJS.ReadStream;
  const stdout = Object.assign(new PassThrough(), { isTTY: options.tty }) as unknown as NodeJS.WriteStream;
  const stderr = new PassThrough() as unknown as NodeJS.WriteStream;
  stdout.on("data", (c) => (out += c));
  stderr.on("data", (c) => (err += c));
  return { io: { stdin, stdout, stderr, env: options.env ?? {}, home: options.home ?? "/nonexistent" }, out: () => out, err: () => err };
}

test("without a terminal deck tui says to use the API and exits 2", async () => {
  const f = fakeIo({ tty: false, env: { DECK_TOKEN: "t" } });
  assert.equal(await runTui([], f.io), 2);
  assert.equal(f.err(), "deck tui needs a terminal; use the API (or ssh deck@HOST …) from scripts\n");
});

test("an unknown flag is one line on stderr and exit 2; --help prints the usage", async () => {
  const bad = fakeIo({ tty: true });
  assert.equal(await runTui(["--colour"], bad.io), 2);
  assert.equal(bad.err().split("\n").length, 2);
  assert.match(bad.err(), /^deck tui: .*--colour.*\(see deck tui --help\)\n$/);
  const help = fakeIo({ tty: false });
  assert.equal(await runTui(["--help"], help.io), 0);
  assert.match(help.out(), /--url URL .*default http:\/\/127\.0\.0\.1:3000/);
  assert.match(help.out(), /chmod 600 ~\/\.config\/deck\/token/);
});

test("the token comes from --token, then DECK_TOKEN, then a token file only its owner may read", async (t) => {
  const home = await mkdtemp(join(tmpdir(), "deck-tui-"));
  t.after(() => rm(home, { recursive: true, force: true }));
  assert.deepEqual(await resolveToken("flag", { DECK_TOKEN: "env" }, home), { ok: true, token: "flag" });
  assert.deepEqual(await resolveToken(undefined, { DECK_TOKEN: "env" }, home), { ok: true, token: "env" });
  const missing = await resolveToken(undefined, {}, home);
  assert.ok(!missing.ok && /^no token: pass --token, set DECK_TOKEN, or save one in .*\.config\/deck\/token \(chmod 600\)$/.test(missing.message));
  const file = join(home, ".config", "deck", "token");
  await mkdir(join(home, ".config", "deck"), { recursive: true });
  await writeFile(file, "from-file\n");
  await chmod(file, 0o644);
  const open = await resolveToken(undefined, {}, home);
  assert.ok(!open.ok && open.message === `${file} may be read by others; run chmod 600 ${file}`);
  await chmod(file, 0o600);
  assert.deepEqual(await resolveToken(undefined, {}, home), { ok: true, token: "from-file" });
});

test("with no token anywhere deck tui says where to put one and exits 2", async () => {
  const f = fakeIo({ tty: true, home: "/nonexistent" });
  assert.equal(await runTui(["--url", "http://127.0.0.1:1"], f.io), 2);
  assert.match(f.err(), /^deck tui: no token: pass --token/);
});
