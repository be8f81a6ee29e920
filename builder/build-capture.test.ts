/**
 * Query commands a buildpack runs for their output (`cargo metadata`, the Python version behind a
 * cached virtualenv) load code the tenant controls, so they run like every other build command: as
 * the app's uid in its sandbox, never as deck's root.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildRequest, BuildResult } from "../core/index.ts";
import { findExecutable } from "../buildpacks/index.ts";
import { freeTestIdentity, sandboxHostOrSkip } from "../runtime/sandbox-test-helpers.ts";
import { runBuild } from "./build.ts";
import { captureCommand } from "./exec.ts";
import { createPushedRepo, type PushedRepoOptions } from "./test-helpers.ts";

describe("captureCommand", () => {
  test("returns stdout whole and streams stderr as lines, whatever the exit code", async () => {
    const lines: string[] = [];
    const r = await captureCommand(["sh", "-c", "printf '{\"a\":\\n1}'; echo warning >&2; exit 3"], { cwd: "/", env: { PATH: "/usr/bin:/bin" }, onLine: (l) => lines.push(l) });
    assert.equal(r.stdout, '{"a":\n1}');
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdoutOverflow, false);
    assert.deepEqual(lines, ["warning"]);
    assert.deepEqual(r.stderrTail, ["warning"]);
  });

  test("stops a command whose stdout passes the cap, keeping what came before it", { timeout: 60_000 }, async () => {
    const r = await captureCommand(["yes", "deck"], { cwd: "/", env: { PATH: "/usr/bin:/bin" }, maxStdoutBytes: 100_000 });
    assert.equal(r.stdoutOverflow, true);
    assert.equal(r.stdout.length, 100_000);
    assert.ok(r.stdout.startsWith("deck\ndeck\n"));
    assert.equal(r.exitCode, null, "the endless command was killed");
  });
});

const { skip } = await sandboxHostOrSkip();

describe("query commands in sandboxed builds", { skip }, () => {
  let dataDir: string;
  let count = 0;
  const identity = freeTestIdentity();

  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "deck-build-capture-"));
    chmodSync(dataDir, 0o755);
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  async function build(app: string, files: Record<string, string>, env: Record<string, string>, repoOptions: PushedRepoOptions = {}): Promise<{ result: BuildResult; text: string }> {
    count += 1;
    const repo = createPushedRepo(mkdtempSync(join(dataDir, "repo-")), files, repoOptions);
    const lines: string[] = [];
    const req: BuildRequest = {
      app, commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {},
      slugDir: join(dataDir, "apps", app, "slugs", `v${count}`), cacheDir: cacheDir(app),
      env, timeoutMs: 300_000, onLine: (l) => lines.push(l), sandbox: identity,
    };
    const result = await runBuild(req, { hide: [dataDir] });
    return { result, text: lines.join("\n") + (result.ok ? "" : `\n(${result.code}) ${result.message}`) };
  }

  const cacheDir = (app: string) => join(dataDir, "cache", app);

  /** Each line a spy wrote: `UID ARGS…`. */
  function spied(file: string): string[] {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  }

  test("cargo metadata runs the toolchain a repository's rust-toolchain.toml names as the app's uid, not as root", async () => {
    const sysroot = execFileSync("rustc", ["--print", "sysroot"], { encoding: "utf8" }).trim();
    // rustup runs the toolchain at an absolute path a repository names; the build's copy of the source sits at a known place.
    const src = join(cacheDir("rust-spy"), "rust", "src");
    const spy = (tool: string) => `#!/bin/sh\necho "$(id -u) ${tool} $*" >> ${src}/uids\nexec ${sysroot}/bin/${tool} "$@"\n`;
    const run = await build("rust-spy", {
      "Cargo.toml": '[package]\nname = "spied"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
      "src/main.rs": 'fn main() { println!("hi"); }\n',
      "rust-toolchain.toml": `[toolchain]\npath = "${src}/toolchain"\n`,
      "toolchain/bin/cargo": spy("cargo"),
      "toolchain/bin/rustc": spy("rustc"),
      "toolchain/lib/.keep": "",
    }, {}, { executable: ["toolchain/bin/cargo", "toolchain/bin/rustc"] });
    assert.equal(run.result.ok, true, run.text);
    const calls = spied(join(src, "uids"));
    assert.ok(calls.some((c) => / cargo metadata /.test(c)), `cargo metadata was run through the repository's toolchain: ${calls.join(" | ")}`);
    assert.deepEqual(calls.filter((c) => !c.startsWith(`${identity.uid} `)), [], "every command of that toolchain ran as the app's uid");
  });

  test("the Python version behind a cached virtualenv is asked of the app's python3 as its uid", async () => {
    const realPython = await findExecutable("python3", process.env.PATH);
    assert.ok(realPython, "python3 is on deck's PATH");
    // A python3 the app left in its own cache in an earlier build, first on the PATH its config sets.
    const tools = join(cacheDir("py-spy"), "tools");
    mkdirSync(tools, { recursive: true });
    writeFileSync(join(tools, "python3"), `#!/bin/sh\necho "$(id -u) $*" >> "$(dirname "$0")/uids"\nexec ${realPython} "$@"\n`, { mode: 0o755 });
    const run = await build("py-spy", { "requirements.txt": "# the standard library only\n", "app.py": "print('hi')\n" }, { PATH: `${tools}:${process.env.PATH}` });
    assert.equal(run.result.ok, true, run.text);
    const calls = spied(join(tools, "uids"));
    assert.ok(calls.some((c) => c.includes(" -c import sys")), `the version query went through the app's python3: ${calls.join(" | ")}`);
    assert.deepEqual(calls.filter((c) => !c.startsWith(`${identity.uid} `)), [], "every python3 ran as the app's uid");
  });
});
