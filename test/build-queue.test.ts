/**
 * The build queue and build limits, end to end: a real deck server with DECK_BUILD_CONCURRENCY=2 and
 * DECK_BUILD_MEMORY=128m, real pushes, and the builds:* commands over SSH and the REST API.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp, type PushResult, type TimedLine } from "./helpers/deck.ts";
import { pidWithArgument } from "./helpers/processes.ts";

const backends = await databaseBackends();

/**
 * A build script that prints when it starts and ends (`start TAG <epoch ms>`, `end TAG <epoch ms>`),
 * taking `ms`. The build runs in a sandbox with a /tmp of its own, so what it prints is all the test
 * sees of it, as a pusher would.
 */
function timedBuild(tag: string, ms: number): Record<string, string> {
  return nodeApp(tag, {
    buildScript: `node -e "console.log('start ${tag} '+Date.now());setTimeout(()=>console.log('end ${tag} '+Date.now()),${ms})"`,
  });
}

/** The [start, end] epoch ms that `timedBuild` printed to the push's output. */
function buildWindow(push: PushResult, tag: string): [number, number] | undefined {
  const at = (kind: string) => {
    const m = push.stderr.match(new RegExp(`^remote:\\s+${kind} ${tag} (\\d+)\\s*$`, "m"));
    return m ? Number(m[1]) : undefined;
  };
  const start = at("start");
  const end = at("end");
  return start !== undefined && end !== undefined ? [start, end] : undefined;
}

/** Allocates and touches ~400 MB, far past a 128 MB limit. */
const MEMORY_HOG = `node -e "const a=[];for(let i=0;i<50;i++){const b=Buffer.alloc(8<<20);b.fill(1);a.push(b)}console.log('allocated '+a.length*8+' MB')"`;

/**
 * Never finishes by itself: starts a sleeper in a session of its own (out of reach of a process-group
 * kill), then prints a tick every 300 ms. The build carries `word` in its arguments and the sleeper
 * `word-sleeper`, so the test can find both among the host's processes: pids seen inside the build's
 * sandbox are not host pids.
 */
function endlessBuild(word: string): string {
  return `node -e "const cp=require('child_process');const s=cp.spawn(process.execPath,['-e','setInterval(()=>{},1e9)','${word}-sleeper'],{detached:true,stdio:'ignore'});s.unref();let i=0;setInterval(()=>console.log('tick '+(i++)),300)" ${word}`;
}

/** A word no other process on the host has among its arguments. */
function uniqueWord(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}


/** Host pids of the endless build marked `word` and of its sleeper, once both run. */
function endlessBuildPids(word: string): [number, number] | undefined {
  const build = pidWithArgument(word);
  const sleeper = pidWithArgument(`${word}-sleeper`);
  return build && sleeper ? [build, sleeper] : undefined;
}

function isRunning(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()?.[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `ssh deck@host COMMAND` with each stdout line time-stamped as it arrives. */
function sshLive(deck: Deck, command: string): { lines: TimedLine[]; done: Promise<{ code: number | null; stderr: string }>; kill(): void } {
  const child = spawn("ssh", [...deck.sshArgs(), "deck@127.0.0.1", command], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: TimedLine[] = [];
  let carry = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => {
    const parts = (carry + c.toString()).split("\n");
    carry = parts.pop() ?? "";
    for (const p of parts) lines.push({ at: Date.now(), text: p });
  });
  child.stderr.on("data", (c) => (stderr += c));
  const done = new Promise<{ code: number | null; stderr: string }>((r) => child.on("close", (code) => r({ code, stderr })));
  return { lines, done, kill: () => child.kill("SIGKILL") };
}

async function api(deck: Deck, method: string, path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${deck.ports.api}/api/v1${path}`, { method, headers: { authorization: `Bearer ${deck.token}` } });
  return { status: res.status, body: await res.json() };
}

for (const backend of backends) {
  describe(`build queue, limits and builds:* commands (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-bq-"));
      deck = await Deck.start({ backend, env: { DECK_BUILD_CONCURRENCY: "2", DECK_BUILD_MEMORY: "128m", DECK_BUILD_TIMEOUT: "15" } });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("builds at most 2 of 4 apps pushed at once, tells the others their place in line, and deploys all 4", async () => {
      const tags = ["qa", "qb", "qc", "qd"];
      const repos = await Promise.all(tags.map((t) => makeRepo(join(work, t), timedBuild(t, 1500))));
      const pushes = await Promise.all(tags.map((t, i) => deck.push(repos[i], t)));
      pushes.forEach((p, i) => assert.equal(p.code, 0, `${tags[i]}: ${p.stderr}`));

      const window = new Map<string, [number, number]>();
      tags.forEach((t, i) => {
        const w = buildWindow(pushes[i], t);
        assert.ok(w, `${t}'s push shows when its build started and ended: ${pushes[i].stderr}`);
        window.set(t, w);
      });
      // Sweep: at any moment, how many builds were between their start and their end.
      let running = 0;
      let most = 0;
      for (const [, d] of [...window.values()].flatMap(([s, e]) => [[s, 1], [e, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1])) {
        running += d;
        most = Math.max(most, running);
      }
      assert.equal(most, 2, `at most 2 builds at once, and 2 did run together: ${JSON.stringify([...window])}`);

      const told = tags.filter((_, i) => /remote: -----> Waiting for a build slot \(position [12] in line\)/.test(pushes[i].stderr));
      assert.ok(told.length >= 1, "a push that had to wait was told its position");
      const firstEnd = Math.min(...[...window.values()].map(([, e]) => e));
      for (const t of told) assert.ok(window.get(t)![0] >= firstEnd, `${t} was told to wait and started only once a slot was free`);
      for (const t of tags) assert.match((await deck.get(t)).body, new RegExp(`^${t} `));
    });

    it("keeps a push that waits for a build slot across a restart of deck, and deploys it once deck is back", async () => {
      // The first two builds take long enough that the third push is still waiting for a slot when deck
      // stops on a busy machine, and stay well inside the 15 s build timeout.
      const repos = await Promise.all(["ka", "kb", "kc"].map((t) => makeRepo(join(work, t), timedBuild(t, t === "kc" ? 4000 : 7000))));
      const started = new Set<string>();
      const building = (t: string) => (l: { text: string }) => void (new RegExp(`^remote:\\s+start ${t} \\d+`).test(l.text) && started.add(t));
      // Both slots taken: the third push waits for one when deck stops.
      const first = deck.push(repos[0], "ka", { onLine: building("ka") });
      const second = deck.push(repos[1], "kb", { onLine: building("kb") });
      const deadline = Date.now() + 60_000;
      while (started.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(started.size, 2, "both builds started");
      let waiting: () => void = () => {};
      const told = new Promise<void>((r) => (waiting = r));
      const third = deck.push(repos[2], "kc", { onLine: (l) => void (/Waiting for a build slot \(position 1 in line\)/.test(l.text) && waiting()) }).finally(() => waiting());
      await told;
      await deck.terminate();
      const [p1, p2, p3] = await Promise.all([first, second, third]);
      assert.equal(p1.code, 0, `a running build finishes before deck stops: ${p1.stderr}`);
      assert.equal(p2.code, 0, p2.stderr);
      assert.notEqual(p3.code, 0);
      assert.match(p3.stderr, /remote: -----> deck is restarting; this push keeps its place in line and deploys once deck is back \(builds:list kc shows it\)/);

      await deck.startServer();
      const end = Date.now() + 120_000;
      let body = "";
      while (Date.now() < end && !/^kc /.test(body)) {
        body = (await deck.get("kc").catch(() => ({ body: "" }))).body;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.match(body, /^kc /, "the push that waited for a build slot was deployed after the restart");
      const [latest] = JSON.parse((await deck.ssh("builds:list kc --json")).stdout) as { status: string }[];
      assert.equal(latest.status, "succeeded");
    });

    it("fails only the push whose build goes over its memory limit; other apps build and keep serving", async () => {
      const steady = await makeRepo(join(work, "steady"), nodeApp("steady"));
      assert.equal((await deck.push(steady, "steady")).code, 0);
      const hog = await makeRepo(join(work, "hog"), nodeApp("hog", { buildScript: MEMORY_HOG }));
      const calm = await makeRepo(join(work, "calm"), timedBuild("calm", 500));

      let polling = true;
      const answers: number[] = [];
      const poller = (async () => {
        while (polling) {
          answers.push((await deck.get("steady").catch(() => ({ status: 0 }))).status);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const [hogPush, calmPush] = await Promise.all([deck.push(hog, "hog"), deck.push(calm, "calm")]);
      polling = false;
      await poller;

      assert.notEqual(hogPush.code, 0);
      assert.match(hogPush.stderr, /remote: deck: push rejected: build ran out of memory \(limit 128 MB\); raise DECK_BUILD_MEMORY or reduce the build's memory use/);
      assert.doesNotMatch(hogPush.stderr, /allocated 400 MB/);
      assert.equal(calmPush.code, 0, calmPush.stderr);
      assert.match((await deck.get("calm")).body, /^calm /);
      assert.ok(answers.length > 5 && answers.every((s) => s === 200), `steady answered every request while hog built: ${answers.join(",")}`);
      assert.match((await deck.get("steady")).body, /^steady /);

      const releases = await deck.ssh("releases hog --json");
      assert.deepEqual(JSON.parse(releases.stdout), [], "no release of the failed build");
      const listed = await api(deck, "GET", "/apps/hog/builds");
      assert.equal(listed.status, 200);
      assert.equal(listed.body.items[0].status, "out-of-memory");
      assert.equal(listed.body.items[0].sizeBytes, null);
      // The deployment records the typed failure; the one that went live is succeeded.
      const [hogDeploy] = (await api(deck, "GET", "/apps/hog/deployments")).body.items;
      assert.deepEqual([hogDeploy.kind, hogDeploy.status, hogDeploy.errorCode], ["push", "failed", "out_of_memory"]);
      const [calmDeploy] = (await api(deck, "GET", "/apps/calm/deployments")).body.items;
      assert.deepEqual([calmDeploy.status, calmDeploy.errorCode, calmDeploy.release], ["succeeded", null, "v1"]);
      const calmBuilds = JSON.parse((await deck.ssh("builds:list calm --json")).stdout);
      assert.equal(calmBuilds[0].status, "succeeded");
      assert.ok(calmBuilds[0].sizeBytes > 0, "the artifact's size is recorded");
      assert.match((await deck.ssh("builds:list calm")).stdout, /^ID +STATUS +COMMIT +BUILDPACK +DURATION +SLUG +REPO +STARTED\n\d+ +succeeded +[0-9a-f]{7} +node +\d+\.\ds +\d+\.\d [KMG]B +\d+\.\d [KMG]B +\d{4}-/);
    });

    it("re-attaches to a running build, cancels it with nothing left running and no release, then prints it", async () => {
      const repo = await makeRepo(join(work, "long"), nodeApp("v1"));
      assert.equal((await deck.push(repo, "long")).code, 0);
      const word = uniqueWord("long");
      await commitFiles(repo, nodeApp("v2", { buildScript: endlessBuild(word) }), "endless build");
      const pushing = deck.push(repo, "long");

      const [buildPid, sleeperPid] = await waitFor("the build to start", () => endlessBuildPids(word));
      const follow = sshLive(deck, "builds:output long");
      try {
        await waitFor("two ticks through builds:output", () => follow.lines.filter((l) => /^\s*tick \d+$/.test(l.text)).length >= 3, 20_000);
        const ticks = follow.lines.filter((l) => /^\s*tick \d+$/.test(l.text));
        assert.ok(ticks.at(-1)!.at - ticks[0].at >= 300, "tick lines arrived one by one while the build ran");
        assert.ok(follow.lines.some((l) => l.text === "-----> Node.js app detected"), "output from before re-attaching is replayed");

        const cancel = await deck.ssh("builds:cancel long");
        assert.equal(cancel.code, 0, cancel.stderr);
        assert.match(cancel.stdout, /^cancelled build \d+ of long$/m);
        const push: PushResult = await pushing;
        assert.notEqual(push.code, 0);
        assert.match(push.stderr, /remote: deck: push rejected: build cancelled by admin@example\.com/);
        const ended = await Promise.race([follow.done, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
        assert.ok(ended && ended.code === 0, "builds:output ends with the build");
      } finally {
        follow.kill();
        for (const pid of [buildPid, sleeperPid]) if (isRunning(pid)) process.kill(pid, "SIGKILL");
      }
      assert.equal(isRunning(buildPid), false, "the build process is gone");
      assert.equal(isRunning(sleeperPid), false, "what the build started outside its process group is gone too");

      const releases = JSON.parse((await deck.ssh("releases long --json")).stdout) as { version: number }[];
      assert.deepEqual(releases.map((r) => r.version), [1], "no release of the cancelled build");
      assert.match((await deck.get("long")).body, /^v1 /);
      const slugs = await readdir(join(deck.dataDir, "apps", "long", "slugs"));
      assert.equal(slugs.length, 1, `only v1's artifact is on disk: ${slugs.join(", ")}`);

      const builds = JSON.parse((await deck.ssh("builds:list long --json")).stdout) as { id: number; status: string }[];
      assert.equal(builds[0].status, "cancelled");
      const [cancelledDeploy] = (await api(deck, "GET", "/apps/long/deployments")).body.items;
      assert.deepEqual([cancelledDeploy.status, cancelledDeploy.errorCode], ["cancelled", "cancelled"]);
      const printed = await deck.ssh(`builds:output long ${builds[0].id}`);
      assert.equal(printed.code, 0, printed.stderr);
      assert.match(printed.stdout, /tick 0\n/);
      assert.match(printed.stdout, /-----> Deploy failed: build cancelled by admin@example\.com/);
      const viaApi = await api(deck, "GET", `/apps/long/builds/${builds[0].id}`);
      assert.equal(viaApi.status, 200);
      assert.equal(viaApi.body.status, "cancelled");
      assert.ok(viaApi.body.lines.includes("-----> Deploy failed: build cancelled by admin@example.com"));

      const nothing = await deck.ssh("builds:cancel long");
      assert.notEqual(nothing.code, 0);
      assert.match(nothing.stderr, /^deck: error \(no_build\): long has no build running or waiting/);
    });

    it("stops a build at its timeout with nothing left running and no release", async () => {
      const repo = await makeRepo(join(work, "slow"), nodeApp("v1"));
      assert.equal((await deck.push(repo, "slow")).code, 0);
      const word = uniqueWord("slow");
      await commitFiles(repo, nodeApp("v2", { buildScript: endlessBuild(word) }), "endless build");
      const pushing = deck.push(repo, "slow");
      const pids = await waitFor("the build to start", () => endlessBuildPids(word));
      const push = await pushing;
      try {
        assert.notEqual(push.code, 0);
        assert.match(push.stderr, /remote: deck: push rejected: build timed out after 15s/);
        for (const pid of pids) assert.equal(isRunning(pid), false, `build process ${pid} is gone`);
      } finally {
        for (const pid of pids) if (isRunning(pid)) process.kill(pid, "SIGKILL");
      }
      assert.deepEqual(JSON.parse((await deck.ssh("releases slow --json")).stdout).map((r: { version: number }) => r.version), [1]);
      assert.match((await deck.get("slow")).body, /^v1 /);
      assert.equal(JSON.parse((await deck.ssh("builds:list slow --json")).stdout)[0].status, "timed-out");
      const [slowDeploy] = (await api(deck, "GET", "/apps/slow/deployments")).body.items;
      assert.deepEqual([slowDeploy.status, slowDeploy.errorCode], ["failed", "timeout"]);
    });

    it("builds:cache:clear makes the next build install its dependencies again", async () => {
      const lockfile = JSON.stringify({
        name: "app", version: "1.0.0", lockfileVersion: 3, requires: true,
        packages: {
          "": { name: "app", version: "1.0.0", dependencies: { ms: "2.1.3" } },
          "node_modules/ms": { version: "2.1.3", resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", integrity: "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==", license: "MIT" },
        },
      });
      const files = (v: string) => {
        const app = nodeApp(v);
        const pkg = JSON.parse(app["package.json"]);
        return { ...app, "package.json": JSON.stringify({ ...pkg, dependencies: { ms: "2.1.3" } }), "package-lock.json": lockfile };
      };
      const repo = await makeRepo(join(work, "cachey"), files("c1"));
      const cold = await deck.push(repo, "cachey");
      assert.equal(cold.code, 0, cold.stderr);
      assert.match(cold.stderr, /Installing dependencies \(npm ci\)/);
      await commitFiles(repo, files("c2"), "c2");
      const warm = await deck.push(repo, "cachey");
      assert.equal(warm.code, 0, warm.stderr);
      assert.match(warm.stderr, /Restoring dependencies from the cache/, "the cache is used while it exists");

      const cleared = await deck.ssh("builds:cache:clear cachey");
      assert.equal(cleared.code, 0, cleared.stderr);
      assert.match(cleared.stdout, /^cleared the build cache of cachey \(\d+\.\d MB\)$/m);
      assert.equal(existsSync(join(deck.dataDir, "cache", "cachey")), false);
      await commitFiles(repo, files("c3"), "c3");
      const after = await deck.push(repo, "cachey");
      assert.equal(after.code, 0, after.stderr);
      assert.match(after.stderr, /Installing dependencies \(npm ci\)/);
      assert.doesNotMatch(after.stderr, /Restoring dependencies/);
      assert.match((await deck.get("cachey")).body, /^c3 /);

      const viaApi = await api(deck, "DELETE", "/apps/cachey/builds/cache");
      assert.equal(viaApi.status, 200);
      assert.ok(viaApi.body.freedBytes > 0, JSON.stringify(viaApi.body));
      assert.equal(existsSync(join(deck.dataDir, "cache", "cachey")), false);
    });
  });
}
