import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

const backends = await databaseBackends();

function remoteRef(repoDir: string, ref = "refs/heads/main"): string {
  try {
    return execFileSync("git", ["--git-dir", repoDir, "rev-parse", "--verify", "--quiet", ref], { encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}

function rawHttp(port: number, path: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "GET", headers: { authorization: `Basic ${Buffer.from(`deck:${token}`).toString("base64")}` } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

for (const backend of backends) {
  describe(`git push deploys through the router (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-work-"));
      deck = await Deck.start({ backend, env: { DECK_KEEP_RELEASES: "3" } });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    // Every case works on apps of its own, so that each one passes or fails alone, in any order.
    /** A new app deployed over SSH from a new repository holding `files`; returns the repository. */
    const deployed = async (app: string, files: Record<string, string> = nodeApp("v1")): Promise<string> => {
      const repo = await makeRepo(join(work, app), files);
      const push = await deck.push(repo, app);
      assert.equal(push.code, 0, push.stderr);
      return repo;
    };
    const appNames = async (): Promise<string[]> => (JSON.parse((await deck.ssh("apps:list --json")).stdout) as { name: string }[]).map((a) => a.name).sort();

    it("deploys a Node.js app pushed over SSH and streams the build as it happens", async () => {
      const repo = await makeRepo(join(work, "web"), nodeApp("v1", {
        buildScript: "node -e \"console.log('compiling step one'); setTimeout(() => console.log('compiling step two'), 2500)\"",
      }));
      const push = await deck.push(repo, "web");
      assert.equal(push.code, 0, push.stderr);
      const first = push.lines.find((l) => l.text.includes("compiling step one"));
      assert.ok(first, `build output missing:\n${push.stderr}`);
      assert.match(first.text, /^remote: /);
      // The line reached the pusher while the build was still running, not in one batch at the end.
      assert.ok(push.endedAt - first.at >= 2000, `first build line arrived only ${push.endedAt - first.at} ms before the push ended`);
      assert.match(push.stderr, /remote: -----> Node\.js app detected/);
      assert.match(push.stderr, /v1 deployed in .*http:\/\/web\.localhost:/);
      const res = await deck.get("web");
      assert.equal(res.status, 200);
      assert.match(res.body, /^v1 /);
      assert.ok(res.headers["x-request-id"], "router adds a request id");
    });

    it("deploys a static site pushed over HTTP with an API token", async () => {
      const repo = await makeRepo(join(work, "site"), { "index.html": "<h1>static hello</h1>\n", "about/index.html": "about page\n" });
      const push = await deck.push(repo, "site", { via: "http" });
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Static site detected|remote: -----> static/i);
      assert.equal((await deck.get("site")).body, "<h1>static hello</h1>\n");
      assert.equal((await deck.get("site", "/about/")).body, "about page\n");
    });

    it("refuses HTTP git without a valid token", async () => {
      const repo = await makeRepo(join(work, "denied"), { "index.html": "<h1>not deployed</h1>\n" });
      const push = await deck.push(repo, "denied", { url: deck.httpUrl("denied", "deck_wrong") });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /Authentication failed|401|could not read Username/);
      assert.ok(!(await appNames()).includes("denied"), "a refused push creates no app");
      assert.equal((await deck.get("denied")).status, 404);
    });

    it("rejects a push whose build fails and keeps the previous release serving", async () => {
      const repo = await deployed("broken");
      const before = remoteRef(join(deck.dataDir, "repos", "broken.git"));
      await commitFiles(repo, nodeApp("v2-broken", { buildScript: "node -e \"console.error('syntax error in app.ts'); process.exit(3)\"" }), "broken build");
      const push = await deck.push(repo, "broken");
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /remote: .*syntax error in app\.ts/);
      assert.match(push.stderr, /remote: deck: push rejected: .*build/i);
      assert.match((await deck.get("broken")).body, /^v1 /);
      assert.equal(remoteRef(join(deck.dataDir, "repos", "broken.git")), before, "a rejected push does not move the branch");
    });

    it("rejects a push whose new release fails its health check and keeps the previous release serving", async () => {
      const repo = await deployed("crashy");
      await commitFiles(repo, nodeApp("v2-crash", { crash: true }), "crashing release");
      const push = await deck.push(repo, "crashy");
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /remote: deck: push rejected: health check failed: web\.1 exited during start-up/);
      assert.match(push.stderr, /boom: missing DATABASE/, "the crashing process's last lines are shown");
      assert.match((await deck.get("crashy")).body, /^v1 /);
    });

    it("rejects a repository no buildpack recognises and names the files it looked for", async () => {
      const repo = await makeRepo(join(work, "docs"), { "README.md": "just docs\n" });
      const push = await deck.push(repo, "docs");
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /remote: .*package\.json.*index\.html.*Procfile/);
    });

    it("stores other branches without deploying them", async () => {
      const repo = await deployed("branches");
      await commitFiles(repo, nodeApp("v2-feature"), "feature work");
      const push = await deck.push(repo, "branches", { ref: "refs/heads/feature" });
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Branch feature stored, not deployed/);
      assert.match((await deck.get("branches")).body, /^v1 /);
      assert.equal(remoteRef(join(deck.dataDir, "repos", "branches.git"), "refs/heads/feature"), remoteRef(join(repo, ".git"), "HEAD"), "the branch is stored");
    });

    it("sets config vars with a new release and reads them back", async () => {
      await deployed("configured");
      const set = await deck.ssh("config:set configured GREETING=hello-there");
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /deployed v\d+/);
      assert.match((await deck.get("configured")).body, /^v1 hello-there /);
      assert.equal((await deck.ssh("config:get configured GREETING")).stdout, "hello-there\n");
      assert.match((await deck.ssh("config:show configured --reveal")).stdout, /GREETING:\s+hello-there/);
      assert.match((await deck.ssh("config:show configured")).stdout, /GREETING:\s+he\*+\n/, "values are masked unless revealed");
      const bad = await deck.ssh("config:set configured not-a-pair");
      assert.equal(bad.code, 1);
      assert.equal(bad.stderr.trim().split("\n").length, 1);
    });

    it("scales web to 2 processes and both receive traffic", async () => {
      await deployed("scaled");
      const r = await deck.ssh("ps:scale scaled web=2");
      assert.equal(r.code, 0, r.stderr);
      const pids = new Set<string>();
      for (let i = 0; i < 20; i++) pids.add(/instance=(\w+)/.exec((await deck.get("scaled")).body)?.[1] ?? "none");
      assert.equal(pids.size, 2, `answers came from ${[...pids].join(", ")}`);
      const report = JSON.parse((await deck.ssh("ps:report scaled --json")).stdout);
      assert.equal(report.processes.length, 2);
      assert.deepEqual(report.formation, { web: 2 });
    });

    it("lists releases and rolls back without rebuilding", async () => {
      const repo = await deployed("rolled");
      await commitFiles(repo, nodeApp("v2"), "second");
      assert.equal((await deck.push(repo, "rolled")).code, 0);
      assert.equal((await deck.ssh("config:set rolled GREETING=hello-there")).code, 0);
      const list = JSON.parse((await deck.ssh("releases rolled --json")).stdout) as { version: number; status: string; description: string }[];
      const live = list.find((r) => r.status === "live")!;
      const v1 = list.find((r) => r.version === 1)!;
      assert.match(v1.description, /Deploy/);
      const rb = await deck.ssh("rollback rolled v1");
      assert.equal(rb.code, 0, rb.stderr);
      assert.doesNotMatch(rb.stdout + rb.stderr, /Installing dependencies/, "rollback does not rebuild");
      assert.match((await deck.get("rolled")).body, /^v1 /);
      const back = await deck.ssh(`rollback rolled v${live.version}`);
      assert.equal(back.code, 0, back.stderr);
      assert.match((await deck.get("rolled")).body, /^v2 hello-there /);
    });

    it("shows the last N log lines with app and build output", async () => {
      await deployed("logged");
      const r = await deck.ssh("logs logged -n 5");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").length, 5);
      const all = (await deck.ssh("logs logged -n 2000")).stdout;
      assert.match(all, /app\[web\.1\]: v1 listening on/);
      assert.match(all, /deck\[build\]: -----> Node\.js app detected/);
    });

    it("follows the log live with logs -t", async () => {
      await deployed("tailed");
      const tail = spawn("ssh", [...deck.sshArgs(), "deck@127.0.0.1", "logs tailed -t -n 1"], { stdio: ["ignore", "pipe", "pipe"] });
      let seen = "";
      tail.stdout.on("data", (c) => (seen += c));
      try {
        while (!seen) await new Promise((r) => setTimeout(r, 50));
        const mark = seen.length;
        assert.equal((await deck.ssh("ps:restart tailed")).code, 0);
        const deadline = Date.now() + 10_000;
        while (!/app\[web\.\d\]: v1 listening on/.test(seen.slice(mark)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.match(seen.slice(mark), /app\[web\.\d\]: v1 listening on/, "lines written after logs -t started reach it");
      } finally {
        tail.kill("SIGKILL");
      }
    });

    it("keeps the last DECK_KEEP_RELEASES artifacts and says when a rollback target is gone", async () => {
      const repo = await deployed("kept", { "index.html": "<h1>site 1</h1>\n" });
      for (const n of [2, 3, 4]) {
        await commitFiles(repo, { "index.html": `<h1>site ${n}</h1>\n` }, `site ${n}`);
        assert.equal((await deck.push(repo, "kept", { via: "http" })).code, 0);
      }
      assert.equal(readdirSync(join(deck.dataDir, "apps", "kept", "slugs")).length, 3);
      const gone = await deck.ssh("rollback kept v1");
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /the build of v1 is no longer kept \(deck keeps the last 3\)/);
      assert.equal((await deck.ssh("rollback kept")).code, 0);
      assert.equal((await deck.get("kept")).body, "<h1>site 3</h1>\n");
    });

    it("refuses hostile app names over SSH and HTTP and touches no file", async () => {
      const repo = await makeRepo(join(work, "hostile"), { "index.html": "<h1>hostile</h1>\n" });
      const appsBefore = await appNames();
      const reposBefore = readdirSync(join(deck.dataDir, "repos")).sort();
      const passwd = readFileSync("/etc/passwd", "utf8");
      const hostile = ["../x", "/etc/passwd", "a/b", "x'y", 'q"uote', "a".repeat(200), "UPPER", "-dash", ""];
      for (const name of hostile) {
        const quoted = name.replace(/'/g, "'\\''");
        const r = await deck.ssh(`git-receive-pack '${quoted}'`);
        assert.equal(r.code, 1, `ssh ${name}`);
        assert.equal(r.stderr.trim().split("\n").length, 1, `one line for ${name}: ${r.stderr}`);
        assert.match(r.stderr, /deck: invalid app name/);
        const h = await rawHttp(deck.ports.api, `/git/${encodeURIComponent(name)}.git/info/refs?service=git-receive-pack`, deck.token);
        assert.ok(h.status >= 400 && h.status < 500, `http ${name}: ${h.status}`);
      }
      const viaGit = await deck.push(repo, "x", { url: `ssh://deck@127.0.0.1:${deck.ports.ssh}/../../etc` });
      assert.notEqual(viaGit.code, 0);
      assert.match(viaGit.stderr, /invalid app name/);
      assert.deepEqual(readdirSync(join(deck.dataDir, "repos")).sort(), reposBefore);
      assert.equal(readFileSync("/etc/passwd", "utf8"), passwd);
      assert.deepEqual(await appNames(), appsBefore, "no app was created");
    });

    it("answers unknown commands, unknown hosts and apps without a release clearly", async () => {
      const r = await deck.ssh("frobnicate empty");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^deck: error \(unknown_command\): unknown command "frobnicate"; run `help`/);
      const missing = await deck.ssh("config:show nosuchapp");
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /app "nosuchapp" does not exist/);
      const unknown = await deck.get("nosuchapp");
      assert.equal(unknown.status, 404);
      assert.match(unknown.body, /nosuchapp\.localhost/);
      assert.equal((await deck.ssh("apps:create empty")).code, 0);
      const noRelease = await deck.get("empty");
      assert.equal(noRelease.status, 503);
      const help = await deck.ssh("help");
      assert.match(help.stdout, /config:set APP KEY=VALUE/);
    });

    it("destroys an app with confirmation", async () => {
      await deployed("doomed", { "index.html": "<h1>doomed</h1>\n" });
      assert.equal((await deck.get("doomed")).status, 200);
      const refused = await deck.ssh("apps:destroy doomed");
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /--confirm doomed/);
      assert.equal((await deck.get("doomed")).status, 200, "a refused destroy leaves the app serving");
      assert.equal((await deck.ssh("apps:destroy doomed --confirm doomed")).code, 0);
      assert.equal((await deck.get("doomed")).status, 404);
      assert.ok(!readdirSync(join(deck.dataDir, "repos")).includes("doomed.git"));
      assert.ok(!(await appNames()).includes("doomed"));
    });
  });
}
