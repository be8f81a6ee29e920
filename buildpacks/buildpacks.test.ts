/**
 * One contract suite run against every buildpack: detection on sample dirs, then build + release on
 * a real checkout-like dir give the expected process types (or a BuildStepError saying what to fix).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Procfile } from "../core/index.ts";
import {
  BUILDPACKS,
  BuildStepError,
  describeNoBuildpack,
  detectBuildpack,
  genericBuildpack,
  nodeBuildpack,
  npmInstallArgv,
  staticBuildpack,
  STATIC_SERVER_PATH,
  type Buildpack,
  type BuildContext,
} from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "deck-buildpacks-"));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;

function sampleDir(files: Record<string, string>): string {
  const dir = join(root, `app-${++dirCount}`);
  mkdirSync(dir);
  for (const [path, content] of Object.entries(files)) writeFileSync(join(dir, path), content);
  return dir;
}

/** A real (unmocked) runner, standing in for the builder's: argv, no shell, fails on non-zero exit. */
function createContext(dir: string): BuildContext & { lines: string[] } {
  const lines: string[] = [];
  const cacheDir = join(root, `cache-${dirCount}`);
  const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", CI: "true" };
  return {
    dir,
    cacheDir,
    env,
    lines,
    onLine: (line) => lines.push(line),
    signal: new AbortController().signal,
    run: (argv, opts = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd ?? dir, env: { ...env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
        child.stdout.on("data", (d: Buffer) => lines.push(...d.toString().split("\n")));
        child.stderr.on("data", (d: Buffer) => lines.push(...d.toString().split("\n")));
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve() : reject(new BuildStepError(`${argv.join(" ")} failed with exit code ${code}`))));
      }),
  };
}

interface ContractCase {
  pack: Buildpack;
  /** Dirs the buildpack must claim. */
  matches: Record<string, string>[];
  /** Dirs it must leave to others. */
  skips: Record<string, string>[];
  /** A dir it builds, and the process types release gives afterwards. */
  builds: { files: Record<string, string>; procfile: Procfile; check?: (dir: string) => void }[];
  /** A dir it detects but refuses to build, with the message the user gets. */
  refuses?: { files: Record<string, string>; message: RegExp }[];
}

const CASES: ContractCase[] = [
  {
    pack: nodeBuildpack,
    matches: [{ "package.json": "{}" }, { "package.json": "{}", "index.html": "<p>" }],
    skips: [{ "index.html": "<p>" }, { Procfile: "web: ./run" }, { "README.md": "hi" }],
    builds: [
      {
        files: { "package.json": JSON.stringify({ name: "a", version: "1.0.0", scripts: { start: "node server.js" } }) },
        procfile: { web: "npm start" },
        check: (dir) => assert.ok(existsSync(join(dir, "package-lock.json")), "npm install ran in the app dir"),
      },
      {
        files: {
          "package.json": JSON.stringify({ name: "b", version: "1.0.0", scripts: { start: "node s.js", build: "node -e \"require('fs').writeFileSync('built.txt','ok')\"" } }),
          Procfile: "worker: node worker.js\n",
        },
        procfile: { worker: "node worker.js", web: "npm start" },
        check: (dir) => assert.ok(existsSync(join(dir, "built.txt")), "the build script ran"),
      },
      {
        files: { "package.json": JSON.stringify({ name: "c", version: "1.0.0", scripts: { start: "node s.js" } }), Procfile: "web: node web.js --fast\n" },
        procfile: { web: "node web.js --fast" },
      },
    ],
    refuses: [
      { files: { "package.json": JSON.stringify({ name: "d", version: "1.0.0" }) }, message: /add a Procfile with a "web:" line or a "start" script/ },
      { files: { "package.json": "{ not json" }, message: /package.json is not valid JSON/ },
    ],
  },
  {
    pack: staticBuildpack,
    matches: [{ "index.html": "<p>" }, { "index.html": "<p>", Procfile: "worker: ./w" }],
    skips: [{ "index.html": "<p>", "package.json": "{}" }, { "about.html": "<p>" }, { Procfile: "web: ./run" }],
    builds: [
      {
        files: { "index.html": "<p>" },
        procfile: { web: "node .deck/static-server.mjs" },
        check: (dir) => assert.ok(existsSync(join(dir, STATIC_SERVER_PATH)), "the file server is in the slug"),
      },
      { files: { "index.html": "<p>", Procfile: "worker: ./sync.sh\n" }, procfile: { web: "node .deck/static-server.mjs", worker: "./sync.sh" } },
    ],
  },
  {
    pack: genericBuildpack,
    matches: [{ Procfile: "web: ./run" }, { Procfile: "web: ./run", "index.html": "<p>" }],
    skips: [{ "README.md": "hi" }, { "procfile.txt": "web: x" }],
    builds: [{ files: { Procfile: "web: ./bin/server --port $PORT\n# a comment\nworker: ./bin/worker\n" }, procfile: { web: "./bin/server --port $PORT", worker: "./bin/worker" } }],
    refuses: [{ files: { Procfile: "# nothing yet\n" }, message: /the Procfile declares no process types/ }],
  },
];

for (const c of CASES) {
  describe(`buildpack contract: ${c.pack.name}`, () => {
    test("detects the apps it builds", async () => {
      for (const files of c.matches) assert.equal(await c.pack.detect(sampleDir(files)), true, JSON.stringify(files));
    });

    test("leaves other apps alone", async () => {
      for (const files of c.skips) assert.equal(await c.pack.detect(sampleDir(files)), false, JSON.stringify(files));
    });

    for (const [i, b] of c.builds.entries()) {
      test(`build + release give the process types (${i + 1})`, async () => {
        const dir = sampleDir(b.files);
        const ctx = createContext(dir);
        await c.pack.build(ctx);
        assert.deepEqual(await c.pack.release(dir), b.procfile);
        b.check?.(dir);
      });
    }

    for (const [i, r] of (c.refuses ?? []).entries()) {
      test(`an app it cannot run is a BuildStepError saying what to fix (${i + 1})`, async () => {
        const dir = sampleDir(r.files);
        assert.equal(await c.pack.detect(dir), true);
        await assert.rejects(
          (async () => {
            await c.pack.build(createContext(dir));
            await c.pack.release(dir);
          })(),
          (e: unknown) => e instanceof BuildStepError && r.message.test(e.message),
        );
      });
    }
  });
}

describe("detection order", () => {
  test("node before static before generic", async () => {
    assert.deepEqual(BUILDPACKS.map((b) => b.name), ["node", "static", "generic"]);
    const all = { "package.json": "{}", "index.html": "<p>", Procfile: "web: x" };
    assert.equal((await detectBuildpack(sampleDir(all)))?.name, "node");
    assert.equal((await detectBuildpack(sampleDir({ "index.html": "<p>", Procfile: "web: x" })))?.name, "static");
    assert.equal((await detectBuildpack(sampleDir({ Procfile: "web: x" })))?.name, "generic");
    assert.equal(await detectBuildpack(sampleDir({ "main.go": "package main" })), undefined);
  });

  test("the no-match message names every file deck looked for", () => {
    assert.equal(
      describeNoBuildpack(),
      "no buildpack matched: deck looked for package.json (Node.js), index.html (static site) and Procfile (any command) in the repository root",
    );
  });
});

describe("node buildpack commands", () => {
  test("installs with the per-app npm cache, preferring it over the registry", () => {
    assert.deepEqual(npmInstallArgv("ci", "/data/cache/app"), ["npm", "ci", "--cache", "/data/cache/app/npm", "--prefer-offline", "--no-audit", "--no-fund"]);
    assert.deepEqual(npmInstallArgv("install", "/c"), ["npm", "install", "--cache", "/c/npm", "--prefer-offline", "--no-audit", "--no-fund"]);
  });

  test("uses npm ci when a lockfile or shrinkwrap pins the dependencies", async () => {
    for (const lock of ["package-lock.json", "npm-shrinkwrap.json"]) {
      const dir = sampleDir({ "package.json": JSON.stringify({ name: "l", version: "1.0.0", scripts: { start: "x" } }), [lock]: JSON.stringify({ name: "l", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "l", version: "1.0.0" } } }) });
      const ctx = createContext(dir);
      await nodeBuildpack.build(ctx);
      assert.ok(ctx.lines.includes("-----> Installing dependencies (npm ci)"), `${lock}: ${ctx.lines.join("|")}`);
    }
  });
});
