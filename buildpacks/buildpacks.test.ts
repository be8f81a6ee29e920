/**
 * One contract suite run against every buildpack: detection on sample dirs, then build + release on
 * a real checkout-like dir give the expected process types (or a BuildStepError saying what to fix).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Procfile } from "../core/index.ts";
import {
  BUILDER_CHOICES,
  BUILDPACKS,
  BuildStepError,
  describeNoBuildpack,
  detectBuildpack,
  genericBuildpack,
  goBuildpack,
  isBuilderChoice,
  nodeBuildpack,
  npmInstallArgv,
  pythonBuildpack,
  rustBuildpack,
  selectBuildpack,
  staticBuildpack,
  STATIC_SERVER_PATH,
  type Buildpack,
  type BuildContext,
} from "./index.ts";
import { createSampleDirs, createTestContext } from "./test-helpers.ts";

const samples = createSampleDirs();
after(() => samples.remove());

function sampleDir(files: Record<string, string>): string {
  return samples.make(files);
}

function createContext(dir: string): BuildContext & { lines: string[] } {
  return createTestContext(dir, { cacheDir: samples.cache() });
}

const GO_MOD = "module example.com/hello\n\ngo 1.19\n";
const GO_MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n';
const CARGO_TOML = '[package]\nname = "hello-rs"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n';
const RUST_MAIN = 'fn main() { println!("hi"); }\n';

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
    pack: pythonBuildpack,
    matches: [{ "requirements.txt": "" }, { "pyproject.toml": "[project]\nname = \"a\"\n" }, { "requirements.txt": "", "index.html": "<p>", Procfile: "web: x" }],
    skips: [{ "app.py": "print(1)" }, { "setup.cfg": "" }, { Procfile: "web: python app.py" }],
    builds: [
      {
        files: { "requirements.txt": "# no third-party packages\n", "app.py": "print('hi')\n" },
        procfile: { web: "python app.py" },
        check: (dir) => {
          assert.ok(existsSync(join(dir, ".venv/bin/python")), "a virtualenv is in the slug");
          assert.deepEqual(JSON.parse(readFileSync(join(dir, ".deck/env.json"), "utf8")).path, [".venv/bin"], "its bin goes on PATH");
        },
      },
      { files: { "requirements.txt": "", "app.py": "", Procfile: "web: gunicorn app:app\nworker: python worker.py\n" }, procfile: { web: "gunicorn app:app", worker: "python worker.py" } },
    ],
    refuses: [{ files: { "requirements.txt": "" }, message: /nothing to run: add a Procfile with a "web:" line \(e\.g\. "web: python app\.py"\) or an app\.py/ }],
  },
  {
    pack: goBuildpack,
    matches: [{ "go.mod": GO_MOD }, { "go.mod": GO_MOD, Procfile: "web: bin/hello" }],
    skips: [{ "main.go": GO_MAIN }, { "go.sum": "" }, { "Cargo.toml": CARGO_TOML }],
    builds: [
      { files: { "go.mod": GO_MOD, "main.go": GO_MAIN }, procfile: { web: "bin/hello" }, check: (dir) => assert.ok(existsSync(join(dir, "bin/hello")), "the command is in the slug") },
      {
        files: { "go.mod": GO_MOD, "cmd/api/main.go": GO_MAIN, "cmd/jobs/main.go": GO_MAIN, Procfile: "web: bin/api\nworker: bin/jobs\n" },
        procfile: { web: "bin/api", worker: "bin/jobs" },
      },
    ],
    refuses: [
      { files: { "go.mod": GO_MOD, "cmd/a/main.go": GO_MAIN, "cmd/b/main.go": GO_MAIN }, message: /the Go build made several commands \(a, b\): add a Procfile line such as "web: bin\/a"/ },
      { files: { "go.mod": "go 1.19\n", "main.go": GO_MAIN }, message: /go\.mod has no "module" line/ },
    ],
  },
  {
    pack: rustBuildpack,
    matches: [{ "Cargo.toml": CARGO_TOML }],
    skips: [{ "main.rs": RUST_MAIN }, { "Cargo.lock": "" }, { "go.mod": GO_MOD }],
    builds: [
      {
        files: { "Cargo.toml": CARGO_TOML, "src/main.rs": RUST_MAIN },
        procfile: { web: "bin/hello-rs" },
        check: (dir) => assert.ok(existsSync(join(dir, "bin/hello-rs")), "the binary is in the slug"),
      },
    ],
    refuses: [{ files: { "Cargo.toml": CARGO_TOML, "src/lib.rs": "pub fn f() {}\n" }, message: /Cargo\.toml defines no binary: add src\/main\.rs/ }],
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
  test("node, then the other languages, then static, then generic", async () => {
    assert.deepEqual(BUILDPACKS.map((b) => b.name), ["node", "python", "go", "rust", "static", "generic"]);
    assert.equal((await detectBuildpack(sampleDir({ "package.json": "{}", "requirements.txt": "" })))?.name, "node");
    assert.equal((await detectBuildpack(sampleDir({ "requirements.txt": "", "index.html": "<p>", Procfile: "web: x" })))?.name, "python");
    assert.equal((await detectBuildpack(sampleDir({ "go.mod": GO_MOD, "index.html": "<p>" })))?.name, "go");
    assert.equal((await detectBuildpack(sampleDir({ "Cargo.toml": CARGO_TOML, Procfile: "web: x" })))?.name, "rust");
    const all = { "package.json": "{}", "index.html": "<p>", Procfile: "web: x" };
    assert.equal((await detectBuildpack(sampleDir(all)))?.name, "node");
    assert.equal((await detectBuildpack(sampleDir({ "index.html": "<p>", Procfile: "web: x" })))?.name, "static");
    assert.equal((await detectBuildpack(sampleDir({ Procfile: "web: x" })))?.name, "generic");
    assert.equal(await detectBuildpack(sampleDir({ "main.go": "package main" })), undefined);
  });

  test("the no-match message names every file deck looked for", () => {
    assert.equal(
      describeNoBuildpack(),
      "no buildpack matched: deck looked for package.json (Node.js), requirements.txt or pyproject.toml (Python), go.mod (Go), Cargo.toml (Rust), index.html (static site) and Procfile (any command) in the repository root (a Dockerfile builds with DECK_RUNTIME=docker)",
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

describe("builder setting", () => {
  test("a named buildpack beats detection", async () => {
    const both = { "package.json": JSON.stringify({ scripts: { start: "node s.js" } }), "requirements.txt": "", "app.py": "" };
    assert.equal((await selectBuildpack(sampleDir(both)))?.name, "node");
    assert.equal((await selectBuildpack(sampleDir(both), "auto"))?.name, "node");
    assert.equal((await selectBuildpack(sampleDir(both), "python"))?.name, "python");
    assert.equal((await selectBuildpack(sampleDir({ "index.html": "<p>", Procfile: "web: ./run" }), "generic"))?.name, "generic");
  });

  test("a named buildpack whose files are missing, or an unknown name, is a BuildStepError saying what to do", async () => {
    await assert.rejects(selectBuildpack(sampleDir({ "package.json": "{}" }), "go"), {
      name: "BuildStepError",
      message: `the app's builder is set to "go" but the repository has no go.mod (Go): add it, or run builder:set APP auto`,
    });
    await assert.rejects(selectBuildpack(sampleDir({ "package.json": "{}" }), "cobol"), (e: unknown) => e instanceof BuildStepError && /does not know: use one of dockerfile, node, python, go, rust, static, generic, auto$/.test(e.message));
  });

  test("builder:set accepts every buildpack, dockerfile and auto", () => {
    assert.deepEqual([...BUILDER_CHOICES], ["dockerfile", "node", "python", "go", "rust", "static", "generic", "auto"]);
    assert.equal(isBuilderChoice("rust"), true);
    assert.equal(isBuilderChoice("Rust"), false);
  });
});
