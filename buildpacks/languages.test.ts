/**
 * Real builds of tiny Python, Go and Rust apps: the slug's web command serves HTTP after the slug is
 * moved (as the builder moves it into place), warm rebuilds reuse the app's cache, and a missing
 * toolchain is an error that names what to install.
 */
import { after, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, utimesSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { applySlugEnv, EMPTY_SLUG_ENV, parseSlugEnv, SLUG_ENV_FILE, type SlugEnv } from "../core/index.ts";
import { BuildStepError, goBuildpack, pythonBuildpack, rustBuildpack, type Buildpack } from "./index.ts";
import { createSampleDirs, createTestContext } from "./test-helpers.ts";
import { freePort } from "../router/test-support.ts";

const samples = createSampleDirs("deck-languages-");
after(() => samples.remove());


function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", agent: false, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

function readSlugEnv(slug: string): SlugEnv {
  let text: string;
  try {
    text = readFileSync(join(slug, SLUG_ENV_FILE), "utf8");
  } catch {
    return EMPTY_SLUG_ENV;
  }
  const parsed = parseSlugEnv(text);
  assert.ok(parsed.ok, parsed.ok ? "" : parsed.message);
  return parsed.env;
}

/** The env deck gives the slug's processes (deploy/activate.ts processEnv, minus deck's own names). */
function slugProcessEnv(slug: string, port: number): Record<string, string> {
  return applySlugEnv({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: slug, LANG: "C.UTF-8", PORT: String(port) }, readSlugEnv(slug), slug);
}

/** Builds `files` with `pack` into a fresh dir; returns the dir, the output and how long it took. */
async function build(pack: Buildpack, files: Record<string, string>, cacheDir: string, prepare?: (dir: string) => void) {
  const dir = samples.make(files);
  prepare?.(dir);
  const ctx = createTestContext(dir, { cacheDir });
  const t0 = performance.now();
  await pack.build(ctx);
  const ms = Math.round(performance.now() - t0);
  return { dir, lines: ctx.lines, ms, procfile: await pack.release(dir) };
}

/** Moves a built dir elsewhere (the builder renames its scratch dir into place), returning the new path. */
function moveSlug(dir: string): string {
  const to = `${dir}-slug`;
  renameSync(dir, to);
  return to;
}

/** Runs the slug's web command the way the process runtime does (`sh -c`), and GETs / once it listens. */
async function serve(t: TestContext, slug: string, command: string): Promise<{ status: number; body: string }> {
  const port = await freePort();
  const child = spawn("sh", ["-c", command], { cwd: slug, env: slugProcessEnv(slug, port), detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  t.after(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await get(port);
    } catch (e) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${command} did not serve: ${(e as Error).message}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function setAllMtimes(dir: string, when: Date): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) setAllMtimes(path, when);
    utimesSync(path, when, when);
  }
}

/** A PATH with the basics (sh, env) but no language toolchain. */
function pathWithout(): string {
  const dir = join(samples.root, "bare-bin");
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function assertMissingToolchain(pack: Buildpack, files: Record<string, string>, message: RegExp): Promise<void> {
  const dir = samples.make(files);
  await assert.rejects(pack.build(createTestContext(dir, { cacheDir: samples.cache(), path: pathWithout() })), (e: unknown) => {
    assert.ok(e instanceof BuildStepError, String(e));
    assert.match(e.message, message);
    return true;
  });
}

const PYTHON_APP = {
  "requirements.txt": "# this app uses the standard library only\n",
  "app.py": `import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python prefix={sys.prefix} venv={os.environ.get('VIRTUAL_ENV')}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`,
};

describe("python buildpack", () => {
  test("serves from the slug's own virtualenv after the slug is moved", async (t) => {
    const built = await build(pythonBuildpack, PYTHON_APP, samples.cache());
    t.diagnostic(`python build: ${built.ms} ms`);
    assert.ok(built.lines.includes("-----> Creating a virtualenv (.venv)"), built.lines.join("\n"));
    const slug = moveSlug(built.dir);
    const res = await serve(t, slug, built.procfile.web);
    assert.equal(res.status, 200);
    assert.equal(res.body, `hello from python prefix=${slug}/.venv venv=${slug}/.venv\n`);

    // Scripts in the virtualenv still start after the move (their #! no longer names the build dir).
    const pip = await new Promise<string>((resolve, reject) =>
      execFile("sh", ["-c", "pip --version"], { cwd: slug, env: slugProcessEnv(slug, 0) }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
    );
    assert.match(pip, new RegExp(`${slug}/\\.venv/lib/`));
  });

  test("a rebuild with the same requirements.txt reuses the virtualenv; a changed one builds a new one", async (t) => {
    const cache = samples.cache();
    const cold = await build(pythonBuildpack, PYTHON_APP, cache);
    assert.ok(cold.lines.includes("-----> Creating a virtualenv (.venv)"), cold.lines.join("\n"));
    const warm = await build(pythonBuildpack, { ...PYTHON_APP, "app.py": `${PYTHON_APP["app.py"]}# changed\n` }, cache);
    t.diagnostic(`python cold ${cold.ms} ms, warm ${warm.ms} ms`);
    assert.ok(warm.lines.includes("-----> Restoring the virtualenv from the cache (requirements.txt unchanged)"), warm.lines.join("\n"));
    assert.ok(!warm.lines.some((l) => l.includes("Creating a virtualenv")));
    const slug = moveSlug(warm.dir);
    const res = await serve(t, slug, warm.procfile.web);
    assert.equal(res.body, `hello from python prefix=${slug}/.venv venv=${slug}/.venv\n`);
    const changed = await build(pythonBuildpack, { ...PYTHON_APP, "requirements.txt": "# still nothing, but a different file\n" }, cache);
    assert.ok(changed.lines.includes("-----> Creating a virtualenv (.venv)"), changed.lines.join("\n"));
  });

  test("a host without python3 gets an error naming what to install", async () => {
    await assertMissingToolchain(pythonBuildpack, PYTHON_APP, /^Python app detected but `python3` is not installed on the deck host: install Python 3\.8\+ with its venv module \(Debian: apt-get install python3 python3-venv\)$/);
  });
});

const GO_MOD = "module example.com/hello\n\ngo 1.19\n";
function goApp(greeting: string): Record<string, string> {
  return {
    "go.mod": GO_MOD,
    "main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "${greeting}") })
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
`,
  };
}

describe("go buildpack", () => {
  test("builds a net/http app that serves, and a warm rebuild compiles nothing", async (t) => {
    const cache = samples.cache();
    const cold = await build(goBuildpack, goApp("hello from go"), cache);
    const warm = await build(goBuildpack, goApp("hello from go"), cache);
    t.diagnostic(`go build: cold ${cold.ms} ms, warm ${warm.ms} ms`);
    // `go build -v` names each package it compiles.
    assert.ok(cold.lines.includes("example.com/hello"), cold.lines.join("\n"));
    assert.ok(!warm.lines.includes("example.com/hello"), `warm build recompiled:\n${warm.lines.join("\n")}`);
    assert.deepEqual(warm.procfile, { web: "bin/hello" });
    const res = await serve(t, moveSlug(warm.dir), warm.procfile.web);
    assert.deepEqual(res, { status: 200, body: "hello from go\n" });

    const changed = await build(goBuildpack, goApp("hello again from go"), cache);
    assert.ok(changed.lines.includes("example.com/hello"), "a change is recompiled");
    assert.equal((await serve(t, moveSlug(changed.dir), changed.procfile.web)).body, "hello again from go\n");
  });

  test("a host without go gets an error naming what to install", async () => {
    await assertMissingToolchain(goBuildpack, goApp("x"), /^Go app detected but `go` is not installed on the deck host: install Go 1\.19\+ \(Debian: apt-get install golang-go\)$/);
  });
});

const CARGO_TOML = '[package]\nname = "hello-rs"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n';
function rustApp(greeting: string): Record<string, string> {
  return {
    "Cargo.toml": CARGO_TOML,
    "src/main.rs": `use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let port: u16 = std::env::var("PORT").expect("PORT").parse().expect("PORT is a number");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let body = "${greeting}\\n";
        let _ = write!(s, "HTTP/1.1 200 OK\\r\\nContent-Length: {}\\r\\nConnection: close\\r\\n\\r\\n{}", body.len(), body);
    }
}
`,
  };
}

describe("rust buildpack", () => {
  // A checkout stamps every file with its commit's time, which may be older than the last build.
  const commitTime = new Date("2020-01-01T00:00:00Z");
  const asCheckout = (dir: string) => setAllMtimes(dir, commitTime);

  test("builds a std-only HTTP responder that serves; a warm rebuild compiles nothing, a change recompiles", async (t) => {
    const cache = samples.cache();
    const cold = await build(rustBuildpack, rustApp("hello from rust"), cache, asCheckout);
    const warm = await build(rustBuildpack, rustApp("hello from rust"), cache, asCheckout);
    t.diagnostic(`rust build: cold ${cold.ms} ms, warm ${warm.ms} ms`);
    assert.ok(cold.lines.some((l) => /^\s*Compiling hello-rs v0\.1\.0/.test(l)), cold.lines.join("\n"));
    assert.ok(!warm.lines.some((l) => /Compiling/.test(l)), `warm build recompiled:\n${warm.lines.join("\n")}`);
    assert.ok(warm.lines.some((l) => /Finished/.test(l)));
    assert.deepEqual(warm.procfile, { web: "bin/hello-rs" });
    assert.deepEqual(await serve(t, moveSlug(warm.dir), warm.procfile.web), { status: 200, body: "hello from rust\n" });

    // Same old timestamp, new content: still rebuilt, never a stale binary.
    const changed = await build(rustBuildpack, rustApp("hello again from rust"), cache, asCheckout);
    assert.ok(changed.lines.some((l) => /Compiling hello-rs/.test(l)), changed.lines.join("\n"));
    assert.equal((await serve(t, moveSlug(changed.dir), changed.procfile.web)).body, "hello again from rust\n");
  });

  test("a host without cargo gets an error naming what to install", async () => {
    await assertMissingToolchain(rustBuildpack, rustApp("x"), /^Rust app detected but `cargo` is not installed on the deck host: install a Rust toolchain with cargo \(https:\/\/rustup\.rs, or Debian: apt-get install cargo\)$/);
  });
});
