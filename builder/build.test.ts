import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildRequest, BuildResult } from "../core/index.ts";
import { runBuild } from "./build.ts";
import { createPushedRepo, findProcesses, uniqueSleepSeconds } from "./test-helpers.ts";

const root = mkdtempSync(join(tmpdir(), "deck-build-"));
after(() => rmSync(root, { recursive: true, force: true }));
let count = 0;

const MS_LOCKFILE = JSON.stringify({
  name: "ms-app",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "ms-app", version: "1.0.0", dependencies: { ms: "2.1.3" } },
    "node_modules/ms": { version: "2.1.3", integrity: "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==", license: "MIT" },
  },
});
const MS_APP = {
  "package.json": JSON.stringify({ name: "ms-app", version: "1.0.0", dependencies: { ms: "2.1.3" }, scripts: { start: "node index.js" } }),
  "package-lock.json": MS_LOCKFILE,
  Procfile: "web: node index.js\nworker: node worker.js\n",
  "index.js": "console.log(require('ms')(60000))\n",
};

function nodeApp(scripts: Record<string, string>, extra: Record<string, string> = {}): Record<string, string> {
  return { "package.json": JSON.stringify({ name: "app", version: "1.0.0", scripts: { start: "node index.js", ...scripts } }), ...extra };
}

interface Run {
  result: BuildResult;
  lines: { line: string; at: number }[];
  text: string;
  endedAt: number;
  req: BuildRequest;
}

/** Pushes `files` to a fresh bare repo (unless one is given) and builds the commit. */
async function build(files: Record<string, string>, overrides: Partial<BuildRequest> = {}): Promise<Run> {
  const dir = join(root, `case-${++count}`);
  mkdirSync(dir);
  const repo = createPushedRepo(dir, files);
  const lines: Run["lines"] = [];
  const req: BuildRequest = {
    app: "myapp",
    commitSha: repo.sha,
    repoDir: repo.repoDir,
    gitEnv: {},
    slugDir: join(dir, "slugs", "v1"),
    cacheDir: join(dir, "cache"),
    env: {},
    timeoutMs: 120_000,
    onLine: (line) => lines.push({ line, at: Date.now() }),
    ...overrides,
  };
  const result = await runBuild(req);
  return { result, lines, text: lines.map((l) => l.line).join("\n"), endedAt: Date.now(), req };
}

function assertNoSlug(run: Run): void {
  assert.equal(existsSync(run.req.slugDir), false, "slugDir must not exist after a failed build");
  const parent = join(run.req.slugDir, "..");
  assert.deepEqual(existsSync(parent) ? readdirSync(parent) : [], [], "no scratch dir is left behind");
}

describe("runBuild: Node.js", () => {
  test("npm ci installs the locked dependency and the Procfile gives the process types", async () => {
    const run = await build(MS_APP, { env: { SECRET_TOKEN: "s3cr3t-config-value" } });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(run.result.buildpack, "node");
    assert.deepEqual(run.result.procfile, { web: "node index.js", worker: "node worker.js" });
    assert.equal(JSON.parse(readFileSync(join(run.req.slugDir, "node_modules/ms/package.json"), "utf8")).version, "2.1.3");
    assert.ok(run.result.sizeBytes > 1000, `slug size ${run.result.sizeBytes}`);

    const headers = run.lines.map((l) => l.line).filter((l) => !l.startsWith("       "));
    assert.deepEqual(headers.slice(0, -1), [
      `-----> Fetching commit ${run.req.commitSha.slice(0, 7)}`,
      "-----> Node.js app detected",
      "-----> Installing dependencies (npm ci)",
      "-----> Discovering process types",
    ]);
    assert.match(headers.at(-1)!, /^-----> Build succeeded in \d+\.\ds$/);
    assert.ok(run.text.includes("       Procfile declares types -> web, worker"), run.text);
    assert.ok(!run.text.includes("s3cr3t-config-value"), "config var values are never printed");
  });

  test("a second build of the same commit with the same cache needs no registry", async () => {
    const first = await build(MS_APP);
    assert.equal(first.result.ok, true, first.text);
    // npm_config_offline forbids every network request: only a cache hit can install ms now.
    const secondLines: string[] = [];
    const second = await runBuild({ ...first.req, slugDir: join(first.req.slugDir, "..", "v2"), env: { npm_config_offline: "true" }, onLine: (l) => secondLines.push(l) });
    assert.equal(second.ok, true, JSON.stringify(second));
    assert.ok(existsSync(join(first.req.slugDir, "..", "v2", "node_modules/ms/index.js")));
    // An unchanged lockfile reuses the installed tree instead of running npm ci again.
    assert.ok(secondLines.includes("-----> Restoring dependencies from the cache (lockfile unchanged)"), secondLines.join("\n"));
    assert.ok(!secondLines.some((l) => l.includes("Installing dependencies")), secondLines.join("\n"));

    // The same offline build with an empty cache fails, so the check above can fail.
    const cold = await build(MS_APP, { env: { npm_config_offline: "true" } });
    assert.equal(cold.result.ok, false);
    assert.equal(!cold.result.ok && cold.result.code, "build_failed");
  });

  test("the build script runs and its output is in the slug", async () => {
    const run = await build(nodeApp({ build: "node build.js" }, { "build.js": "require('fs').mkdirSync('dist'); require('fs').writeFileSync('dist/app.js', 'built')\n" }));
    assert.equal(run.result.ok, true, run.text);
    assert.equal(readFileSync(join(run.req.slugDir, "dist/app.js"), "utf8"), "built");
    assert.ok(run.text.includes("-----> Installing dependencies (npm install)"), run.text);
    assert.ok(run.text.includes("-----> Building (npm run build)"), run.text);
    assert.ok(run.text.includes("       Default types for buildpack -> web"), run.text);
    assert.deepEqual(run.result.ok && run.result.procfile, { web: "npm start" });
  });

  test("output lines arrive while the build runs, not at the end", async () => {
    const script = "console.log('first step'); setTimeout(() => console.log('second step'), 1500)";
    const run = await build(nodeApp({ build: "node build.js" }, { "build.js": script }));
    assert.equal(run.result.ok, true, run.text);
    const first = run.lines.find((l) => l.line === "       first step");
    const second = run.lines.find((l) => l.line === "       second step");
    assert.ok(first && second, run.text);
    assert.ok(run.endedAt - first.at >= 1200, `"first step" arrived ${run.endedAt - first.at} ms before the end`);
  });

  test("a failing build script is build_failed and leaves no slug", async () => {
    const run = await build(nodeApp({ build: "echo compile error >&2; exit 2" }));
    assert.equal(run.result.ok, false);
    if (run.result.ok) return;
    assert.equal(run.result.code, "build_failed");
    assert.equal(run.result.message, "npm run build failed with exit code 2");
    assert.ok(run.text.includes("       compile error"), run.text);
    assertNoSlug(run);
  });

  test("an app with neither a Procfile web line nor a start script is told what to add", async () => {
    const run = await build({ "package.json": JSON.stringify({ name: "x", version: "1.0.0" }) });
    assert.equal(!run.result.ok && run.result.code, "build_failed");
    assert.match(!run.result.ok ? run.result.message : "", /add a Procfile with a "web:" line or a "start" script/);
    assertNoSlug(run);
  });
});

describe("runBuild: other buildpacks", () => {
  test("a static site's slug serves index.html with its web command", async (t) => {
    const run = await build({ "index.html": "<h1>static home</h1>", "css/site.css": "body{}" });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(run.result.buildpack, "static");
    assert.ok(run.text.includes("-----> Static site detected"), run.text);

    const web = spawn("sh", ["-c", run.result.procfile.web], {
      cwd: run.req.slugDir,
      env: { PATH: process.env.PATH, PORT: "0" },
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    });
    // The shell and the server it starts share a process group: stop both.
    t.after(() => {
      if (web.pid) {
        try {
          process.kill(-web.pid, "SIGKILL");
        } catch {}
      }
    });
    const port = await new Promise<number>((resolve, reject) => {
      web.stdout.on("data", (d: Buffer) => {
        const m = /listening on port (\d+)/.exec(d.toString());
        if (m) resolve(Number(m[1]));
      });
      web.on("exit", (code) => reject(new Error(`web exited with ${code}`)));
    });
    const body = await new Promise<string>((resolve, reject) => {
      get({ host: "127.0.0.1", port, path: "/" }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => resolve(text));
      }).on("error", reject);
    });
    assert.equal(body, "<h1>static home</h1>");
  });

  test("a Procfile alone is a generic app with no build step", async () => {
    const run = await build({ Procfile: "web: ./server --port $PORT\n", server: "#!/bin/sh\n" });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(run.result.buildpack, "generic");
    assert.deepEqual(run.result.procfile, { web: "./server --port $PORT" });
    assert.ok(existsSync(join(run.req.slugDir, "server")));
  });

  test("a repository no buildpack recognises is no_buildpack, naming what deck looked for", async () => {
    const run = await build({ "main.go": "package main\n", "docs/notes.txt": "hello" });
    assert.deepEqual(run.result.ok ? undefined : { code: run.result.code, message: run.result.message }, {
      code: "no_buildpack",
      message: "no buildpack matched: deck looked for package.json (Node.js), requirements.txt or pyproject.toml (Python), go.mod (Go), Cargo.toml (Rust), index.html (static site) and Procfile (any command) in the repository root (a Dockerfile builds with DECK_RUNTIME=docker)",
    });
    assertNoSlug(run);
  });
});

describe("runBuild: stopping builds", () => {
  test("a build past its timeout is stopped with everything it started", async (t) => {
    const sleep = ["sleep", uniqueSleepSeconds()];
    t.after(() => findProcesses(sleep).forEach((pid) => process.kill(pid, "SIGKILL")));
    const started = Date.now();
    const run = await build(nodeApp({ build: sleep.join(" ") }), { timeoutMs: 6000 });
    assert.equal(run.result.ok, false);
    assert.equal(!run.result.ok && run.result.code, "timeout");
    assert.equal(!run.result.ok && run.result.message, "build timed out after 6s");
    assert.ok(run.endedAt - started < 14_000, `took ${run.endedAt - started} ms`);
    assert.ok(run.text.includes("-----> Building (npm run build)"), `the timeout hit during the build script: ${run.text}`);
    assert.deepEqual(findProcesses(sleep), []);
    assertNoSlug(run);
  });

  test("cancelling through the AbortSignal stops the build and everything it started", async (t) => {
    const sleep = ["sleep", uniqueSleepSeconds()];
    t.after(() => findProcesses(sleep).forEach((pid) => process.kill(pid, "SIGKILL")));
    const controller = new AbortController();
    let cancelledAt = 0;
    const run = await build(nodeApp({ build: `echo now sleeping && ${sleep.join(" ")}` }), {
      signal: controller.signal,
      onLine: (line) => {
        if (line.endsWith("now sleeping")) {
          cancelledAt = Date.now();
          setTimeout(() => controller.abort(), 200);
        }
      },
    });
    assert.ok(cancelledAt > 0, "the build reached its sleep");
    assert.equal(!run.result.ok && run.result.code, "cancelled");
    assert.ok(run.endedAt - cancelledAt < 5000, `took ${run.endedAt - cancelledAt} ms after the cancel`);
    assert.deepEqual(findProcesses(sleep), []);
    assertNoSlug(run);
  });

  test("an already-cancelled build does nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    const run = await build(MS_APP, { signal: controller.signal });
    assert.equal(!run.result.ok && run.result.code, "cancelled");
    assertNoSlug(run);
  });
});

describe("runBuild: checkout", () => {
  test("a commit the repository does not have is checkout_failed", async () => {
    const run = await build({ Procfile: "web: x" }, { commitSha: "e".repeat(40) });
    assert.equal(!run.result.ok && run.result.code, "checkout_failed");
    assertNoSlug(run);
  });

  test("a malformed sha is refused before git runs", async () => {
    const run = await build({ Procfile: "web: x" }, { commitSha: "--output=/tmp/x" });
    assert.equal(!run.result.ok && run.result.code, "checkout_failed");
    assert.deepEqual(run.lines, []);
  });

  test("an existing slugDir is a caller bug and throws", async () => {
    const dir = mkdtempSync(join(root, "exists-"));
    const repo = createPushedRepo(dir, { Procfile: "web: x" });
    const req: BuildRequest = { app: "a", commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {}, slugDir: dir, cacheDir: join(dir, "c"), env: {}, timeoutMs: 10_000, onLine: () => {} };
    await assert.rejects(runBuild(req), /slugDir already exists/);
  });
});
