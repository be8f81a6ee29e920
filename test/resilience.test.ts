import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";
import { pidWithArgument } from "./helpers/processes.ts";

const backends = await databaseBackends();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}


for (const backend of backends) {
  describe(`crashes and disconnects (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-work-"));
      deck = await Deck.start({ backend });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("keeps apps serving while the deck server is SIGKILLed, and comes back with its state", async () => {
      const repo = await makeRepo(join(work, "steady"), nodeApp("s1"));
      assert.equal((await deck.push(repo, "steady")).code, 0);
      assert.equal((await deck.ssh("config:set steady GREETING=kept")).code, 0);
      const before = JSON.parse((await deck.ssh("ps:report steady --json")).stdout);
      const releasesBefore = (await deck.ssh("releases steady --json")).stdout;

      const agent = new http.Agent({ keepAlive: true });
      const failures: string[] = [];
      // Where the control plane is when a request is sent; a request counts for a phase only when it was
      // both sent and answered in it, so nothing answered before the kill counts as served during the outage.
      type Phase = "up" | "down" | "restarting" | "back";
      let phase: Phase = "up";
      const served: Record<Phase, number> = { up: 0, down: 0, restarting: 0, back: 0 };
      let stop = false;
      const load = (async () => {
        while (!stop) {
          const sentIn: Phase = phase;
          try {
            const r = await deck.get("steady", "/", { agent });
            if (r.status === 200 && r.body.startsWith("s1 kept")) {
              if (phase === sentIn) served[sentIn]++;
            } else failures.push(`${r.status} ${r.body.slice(0, 60)}`);
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      })();
      const until = async (what: string, done: () => boolean) => {
        for (const deadline = Date.now() + 30_000; !done(); await new Promise((r) => setTimeout(r, 20))) {
          if (Date.now() > deadline) throw new Error(`${what} did not happen within 30 s; served ${JSON.stringify(served)}; failures ${failures.slice(0, 3)}`);
        }
      };
      await until("the first answers", () => served.up > 0);
      await deck.kill9();
      phase = "down";
      await until("answers while the deck server is dead", () => served.down >= 20 || failures.length > 0);
      phase = "restarting";
      await deck.startServer();
      phase = "back";
      await until("answers after the restart", () => served.back >= 20 || failures.length > 0);
      stop = true;
      await load;
      agent.destroy();
      assert.deepEqual(failures, []);
      assert.ok(served.down >= 20, `requests sent after the kill were served while the control plane was down: ${served.down}`);

      const afterReport = JSON.parse((await deck.ssh("ps:report steady --json")).stdout);
      assert.deepEqual(afterReport.processes.map((p: { pid: number }) => p.pid), before.processes.map((p: { pid: number }) => p.pid), "the same processes were adopted, not restarted");
      assert.equal((await deck.ssh("releases steady --json")).stdout, releasesBefore);
      await commitFiles(repo, nodeApp("s2"), "after restart");
      const push = await deck.push(repo, "steady");
      assert.equal(push.code, 0, push.stderr);
      assert.match((await deck.get("steady")).body, /^s2 kept/);
    });

    it("refuses a second deck server on the same data dir, leaving the running one and its apps alone", async () => {
      const repo = await makeRepo(join(work, "single"), nodeApp("one"));
      assert.equal((await deck.push(repo, "single")).code, 0);
      const second = spawn(join(import.meta.dirname, "..", "bin", "deck"), ["server"], { cwd: deck.dir, env: deck.env(), stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      second.stdout.on("data", (c) => (output += c));
      second.stderr.on("data", (c) => (output += c));
      const code = await new Promise<number | null>((resolve) => second.once("exit", (c) => resolve(c)));
      assert.notEqual(code, 0, output);
      assert.match(output, /another deck server is running on .+; stop it first \(deck down\), or give this one another DECK_DATA_DIR/);
      assert.match((await deck.get("single")).body, /^one /);
      const listed = await deck.ssh("apps:list");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /single/);
      await commitFiles(repo, nodeApp("two"), "two");
      assert.equal((await deck.push(repo, "single")).code, 0, "the running server still takes pushes");
      assert.match((await deck.get("single")).body, /^two /);
    });

    it("cancels the deploy when the pusher disconnects mid-build, keeps the old release and the build log", async () => {
      const repo = await makeRepo(join(work, "cut"), nodeApp("c1"));
      assert.equal((await deck.push(repo, "cut")).code, 0);
      // The build runs in its own pid namespace: the test finds it on the host by a word in its arguments.
      const marker = `long-build-${process.pid}-${Date.now()}`;
      await commitFiles(repo, nodeApp("c2", {
        buildScript: `node -e "console.log('long build running'); setTimeout(() => {}, 60000)" ${marker}`,
      }), "slow build");
      const git = spawn("git", ["-C", repo, "push", deck.sshUrl("cut"), "HEAD:refs/heads/main"], { env: deck.gitEnv(), stdio: ["ignore", "ignore", "pipe"], detached: true });
      let seen = "";
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`build never started: ${seen}`)), 60_000);
        git.stderr.on("data", (c) => {
          seen += c;
          // Matches the line the build prints, not npm's echo of the script.
          if (/remote:\s+long build running\s*$/m.test(seen)) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const buildPid = pidWithArgument(marker);
      assert.ok(alive(buildPid));
      // The pusher vanishes: the whole git process group dies, taking the ssh connection with it.
      process.kill(-git.pid!, "SIGKILL");
      const deadline = Date.now() + 15_000;
      while (alive(buildPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(!alive(buildPid), "the build process was stopped");
      assert.match((await deck.get("cut")).body, /^c1 /);
      const releases = JSON.parse((await deck.ssh("releases cut --json")).stdout) as { version: number; status: string }[];
      assert.equal(releases.length, 1, "no release was made of the cancelled build");
      // The build stops first; the deploy's last line follows once its failure is recorded.
      let logs = "";
      const logDeadline = Date.now() + 15_000;
      while (Date.now() < logDeadline && !/Deploy failed: /.test(logs)) {
        logs = (await deck.ssh("logs cut -n 500")).stdout;
        if (!/Deploy failed: /.test(logs)) await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(logs, /long build running/);
      assert.match(logs, /Deploy failed: .*(cancel|disconnect)/i);
      const slugs = readdirSync(join(deck.dataDir, "apps", "cut", "slugs"));
      assert.equal(slugs.filter((s) => !/^\d+$/.test(s)).length, 0, `no half-built artifact is left: ${slugs}`);
      assert.ok(existsSync(join(deck.dataDir, "repos", "cut.git")));
      // The app still takes a normal push afterwards.
      await commitFiles(repo, nodeApp("c3"), "normal");
      assert.equal((await deck.push(repo, "cut")).code, 0);
      assert.match((await deck.get("cut")).body, /^c3 /);
    });
  });
}
