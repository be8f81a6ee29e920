/**
 * Builds run as the app's own uid in the sandbox: a hostile build script cannot read deck's keys, and
 * the language toolchains (npm, python venv + pip under pyenv, go, cargo under rustup) still work, as
 * do the slugs they produce when the process runtime starts them sandboxed.
 */
import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applySlugEnv, EMPTY_SLUG_ENV, parseSlugEnv, SLUG_ENV_FILE, type BuildRequest, type BuildResult } from "../core/index.ts";
import { findFreePort } from "../runtime/free-port.ts";
import { ProcessRuntime } from "../runtime/process-runtime.ts";
import { freeTestIdentity, sandboxHostOrSkip } from "../runtime/sandbox-test-helpers.ts";
import { handOverArgv, runBuild } from "./build.ts";
import { createPushedRepo } from "./test-helpers.ts";

test("the checkout and cache are handed to the app's uid without following symlinks", () => {
  assert.deepEqual(handOverArgv("/data/cache/app", { uid: 70001, gid: 70002 }), [
    "find", "/data/cache/app", "(", "!", "-uid", "70001", "-o", "!", "-gid", "70002", ")", "-exec", "chown", "-h", "70001:70002", "{}", "+",
  ]);
});

const { skip } = await sandboxHostOrSkip();
const KEY = "-----BEGIN PRIVATE KEY-----deck-signing-key";

describe("sandboxed builds", { skip }, () => {
  let dataDir: string;
  let keyFile: string;
  let count = 0;
  const identity = freeTestIdentity();
  let runtime: ProcessRuntime;

  before(() => {
    // Laid out like deck's data dir: keys beside the apps' slugs and caches.
    dataDir = mkdtempSync(join(tmpdir(), "deck-build-sandbox-"));
    keyFile = join(dataDir, "keys", "jwt", "signing.private.pem");
    mkdirSync(join(dataDir, "keys", "jwt"), { recursive: true });
    writeFileSync(keyFile, `${KEY}\n`);
    // Readable by anyone on purpose: only the sandbox keeps it from the build.
    chmodSync(keyFile, 0o644);
    chmodSync(dataDir, 0o755);
    runtime = new ProcessRuntime({ stateDir: join(dataDir, "run", "procs"), hide: [dataDir] });
  });
  after(async () => {
    await runtime.stopAll(0).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function build(files: Record<string, string>, app = `app${count + 1}`): Promise<{ result: BuildResult; text: string; req: BuildRequest }> {
    count += 1;
    const repo = createPushedRepo(mkdtempSync(join(dataDir, "repo-")), files);
    const lines: string[] = [];
    const req: BuildRequest = {
      app, commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {},
      slugDir: join(dataDir, "apps", app, "slugs", `v${count}`), cacheDir: join(dataDir, "cache", app),
      env: { SECRET_TOKEN: "config-value" }, timeoutMs: 300_000, onLine: (l) => lines.push(l), sandbox: identity,
    };
    const result = await runBuild(req, { hide: [dataDir] });
    return { result, text: lines.join("\n"), req };
  }

  /** Starts the slug's web process the way deploys do, sandboxed, and GETs / once it listens. */
  async function serve(t: TestContext, slug: string, command: string): Promise<string> {
    const slugEnvText = (() => {
      try {
        return readFileSync(join(slug, SLUG_ENV_FILE), "utf8");
      } catch {
        return undefined;
      }
    })();
    const parsed = slugEnvText === undefined ? undefined : parseSlugEnv(slugEnvText);
    const slugEnv = parsed?.ok ? parsed.env : EMPTY_SLUG_ENV;
    const port = await findFreePort();
    const env = applySlugEnv({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: slug, LANG: "C.UTF-8" }, slugEnv, slug);
    const info = await runtime.start({
      app: "served", release: 1, generation: ++count, type: "web", index: 1, command, cwd: slug, env, port,
      logFile: join(dataDir, "logs", "served.log"), sandbox: identity,
    });
    t.after(() => runtime.stop(info.id, 1000));
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
        return await res.text();
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${command} did not serve: ${(e as Error).message}\n${readFileSync(join(dataDir, "logs", "served.log"), "utf8")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  test("a build script runs as the app's uid and cannot read deck's keys", async () => {
    const script = [
      "id -u",
      `cat $PWD/../../../../keys/jwt/signing.private.pem || true`,
      `cat ${keyFile} || true`,
      "ls /proc | grep -c '^[0-9]'",
      'echo "home=$HOME" && touch "$HOME/x" && echo home-writable',
      "echo token=$SECRET_TOKEN",
      // A link to a file of deck's: handing the tree over must change the link, never its target.
      `ln -s ${keyFile} $PWD/../key-link`,
    ].join("; ");
    const run = await build({ "package.json": JSON.stringify({ name: "evil", version: "1.0.0", scripts: { build: script, start: "node index.js" } }), "index.js": "" });
    assert.equal(run.result.ok, true, run.text);
    assert.match(run.text, new RegExp(`^ {7}${identity.uid}$`, "m"), "the build ran as the app's uid");
    assert.ok(!run.text.includes(KEY), "the build printed deck's key");
    assert.match(run.text, /signing\.private\.pem: No such file or directory/);
    assert.match(run.text, /home=\/home\/app\n {7}home-writable/);
    assert.match(run.text, /token=config-value/, "the app's config reaches its build");
    const procs = Number(/^ {7}(\d+)$/m.exec(run.text.split(String(identity.uid))[1] ?? "")?.[1]);
    assert.ok(procs > 0 && procs < 10, `the build sees ${procs} processes`);
    assert.equal(statSync(run.req.slugDir).uid, identity.uid, "the slug belongs to the app's uid");
    assert.equal(statSync(keyFile).uid, 0, "deck's key still belongs to root");
    assert.deepEqual(readdirSync(run.req.cacheDir).filter((e) => e.startsWith(".build-")), [], "no scratch dir is left in the cache");
  });

  test("npm ci installs from the registry, and a rebuild hard-links node_modules from the cache", async () => {
    const files = {
      "package.json": JSON.stringify({ name: "ms-app", version: "1.0.0", dependencies: { ms: "2.1.3" }, scripts: { start: "node index.js" } }),
      "package-lock.json": JSON.stringify({
        name: "ms-app", version: "1.0.0", lockfileVersion: 3, requires: true,
        packages: {
          "": { name: "ms-app", version: "1.0.0", dependencies: { ms: "2.1.3" } },
          "node_modules/ms": { version: "2.1.3", resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", integrity: "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==", license: "MIT" },
        },
      }),
      "index.js": "require('http').createServer((q, s) => s.end(require('ms')(60000))).listen(process.env.PORT, '127.0.0.1');\n",
    };
    const first = await build(files, "npm-app");
    assert.equal(first.result.ok, true, first.text);
    const second = await build(files, "npm-app");
    assert.equal(second.result.ok, true, second.text);
    assert.equal(JSON.parse(readFileSync(join(second.req.slugDir, "node_modules/ms/package.json"), "utf8")).version, "2.1.3");
  });

  test("python: a venv with pip, served from the slug in the sandbox", async (t) => {
    const run = await build({
      "requirements.txt": "# the standard library only\n",
      "app.py": `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"python uid={os.getuid()}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`,
    });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(await serve(t, run.req.slugDir, run.result.procfile.web), `python uid=${identity.uid}`);
  });

  test("go: modules and build cache in the app's cache dir", async (t) => {
    const run = await build({
      "go.mod": "module example.com/hello\n\ngo 1.19\n",
      "main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "go uid=%d", os.Getuid()) })
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
`,
    });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(await serve(t, run.req.slugDir, run.result.procfile.web), `go uid=${identity.uid}`);
  });

  test("rust: cargo through rustup's read-only toolchains", async (t) => {
    const run = await build({
      "Cargo.toml": '[package]\nname = "hello-rs"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
      "src/main.rs": `use std::io::{Read, Write};
fn main() {
    let port = std::env::var("PORT").unwrap();
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let body = "rust";
        let _ = write!(s, "HTTP/1.1 200 OK\\r\\nContent-Length: {}\\r\\nConnection: close\\r\\n\\r\\n{}", body.len(), body);
    }
}
`,
    });
    assert.equal(run.result.ok, true, run.text);
    if (!run.result.ok) return;
    assert.equal(await serve(t, run.req.slugDir, run.result.procfile.web), "rust");
  });
});
