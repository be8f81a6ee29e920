import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp, type PushResult } from "./helpers/deck.ts";

const backends = await databaseBackends();

const slowBuild = (tag: string) => nodeApp(tag, {
  buildScript: `node -e "console.log('build ${tag} start'); setTimeout(() => console.log('build ${tag} end'), 2500)"`,
});

function window(push: PushResult, tag: string): [number, number] {
  // The build prints these lines itself (npm also echoes the script, which mentions both).
  const start = push.lines.find((l) => new RegExp(`^remote:\\s+build ${tag} start\\s*$`).test(l.text));
  const end = push.lines.find((l) => new RegExp(`^remote:\\s+build ${tag} end\\s*$`).test(l.text));
  assert.ok(start && end, `build ${tag} output missing:\n${push.stderr}`);
  return [start.at, end.at];
}

for (const backend of backends) {
  describe(`one deploy per app at a time, apps in parallel (${backend.name} PostgreSQL)`, () => {
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

    it("runs two pushes to the same app one after the other, telling the second its place in line", async () => {
      const a = await makeRepo(join(work, "qa"), slowBuild("A"));
      const b = await makeRepo(join(work, "qb"), slowBuild("B"));
      // main and master both deploy, so neither push invalidates the other's ref update.
      // The second push starts once the first one's build is under way, however slow the machine.
      let startB: () => void = () => {};
      const aBuilding = new Promise<void>((resolve) => (startB = resolve));
      const [pa, pb] = await Promise.all([
        deck.push(a, "queued", { onLine: (l) => { if (/^remote:\s+build A start\s*$/.test(l.text)) startB(); } }).finally(() => startB()),
        aBuilding.then(() => deck.push(b, "queued", { ref: "refs/heads/master" })),
      ]);
      assert.equal(pa.code, 0, pa.stderr);
      assert.equal(pb.code, 0, pb.stderr);
      assert.match(pb.stderr, /remote: -----> Another deploy of queued is running; waiting \(position 1 in line\)/);
      const [, aEnd] = window(pa, "A");
      const [bStart] = window(pb, "B");
      assert.ok(bStart > aEnd, "the second build started only after the first deploy finished");
      assert.match((await deck.get("queued")).body, /^B /);
    });

    it("refuses a queued push whose branch moved meanwhile, leaving the first deploy live", async () => {
      const base = join(work, "race");
      await makeRepo(base, nodeApp("base"));
      assert.equal((await deck.push(base, "race")).code, 0);
      const c1 = join(work, "race1");
      const c2 = join(work, "race2");
      execFileSync("git", ["clone", "-q", base, c1]);
      execFileSync("git", ["clone", "-q", base, c2]);
      await commitFiles(c1, slowBuild("one"), "one");
      await commitFiles(c2, nodeApp("two"), "two");
      let start2: () => void = () => {};
      const oneBuilding = new Promise<void>((resolve) => (start2 = resolve));
      const [p1, p2] = await Promise.all([
        deck.push(c1, "race", { onLine: (l) => { if (/^remote:\s+build one start\s*$/.test(l.text)) start2(); } }).finally(() => start2()),
        oneBuilding.then(() => deck.push(c2, "race")),
      ]);
      assert.equal(p1.code, 0, p1.stderr);
      assert.notEqual(p2.code, 0);
      assert.match(p2.stderr, /remote: deck: push rejected: main moved to [0-9a-f]{7} while this push waited/);
      assert.match((await deck.get("race")).body, /^one /);
    });

    it("deploys two different apps in parallel", async () => {
      const x = await makeRepo(join(work, "px"), slowBuild("X"));
      const y = await makeRepo(join(work, "py"), slowBuild("Y"));
      const [px, py] = await Promise.all([deck.push(x, "para-x"), deck.push(y, "para-y")]);
      assert.equal(px.code, 0, px.stderr);
      assert.equal(py.code, 0, py.stderr);
      const [xs, xe] = window(px, "X");
      const [ys, ye] = window(py, "Y");
      assert.ok(xs < ye && ys < xe, `the two builds overlapped in time: X ${xs}-${xe}, Y ${ys}-${ye}`);
      assert.doesNotMatch(px.stderr + py.stderr, /waiting/);
    });

    it("keeps a push that waits in line across a restart of deck, and deploys it once deck is back", async () => {
      const base = join(work, "resume");
      await makeRepo(base, nodeApp("base"));
      assert.equal((await deck.push(base, "resume")).code, 0);
      const c1 = join(work, "resume1");
      const c2 = join(work, "resume2");
      execFileSync("git", ["clone", "-q", base, c1]);
      execFileSync("git", ["clone", "-q", base, c2]);
      await commitFiles(c1, slowBuild("first"), "first");
      await commitFiles(c2, nodeApp("second"), "second");
      const secondSha = execFileSync("git", ["-C", c2, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
      // The second push (to master, so the first one's branch update does not refuse it) waits behind the
      // first one's build; deck is stopped while it waits.
      let firstBuilding: () => void = () => {};
      const building = new Promise<void>((resolve) => (firstBuilding = resolve));
      let secondWaiting: () => void = () => {};
      const waiting = new Promise<void>((resolve) => (secondWaiting = resolve));
      const first = deck.push(c1, "resume", { onLine: (l) => { if (/^remote:\s+build first start\s*$/.test(l.text)) firstBuilding(); } }).finally(() => firstBuilding());
      await building;
      const second = deck.push(c2, "resume", { ref: "refs/heads/master", onLine: (l) => { if (/waiting \(position 1 in line\)/.test(l.text)) secondWaiting(); } }).finally(() => secondWaiting());
      await waiting;
      await deck.terminate();
      const [p1, p2] = await Promise.all([first, second]);
      assert.equal(p1.code, 0, `the running deploy finishes before deck stops: ${p1.stderr}`);
      assert.notEqual(p2.code, 0);
      assert.match(p2.stderr, /remote: -----> deck is restarting; this push keeps its place in line and deploys once deck is back \(builds:list resume shows it\)/);

      await deck.startServer();
      const deadline = Date.now() + 120_000;
      let body = "";
      while (Date.now() < deadline && !/^second /.test(body)) {
        body = (await deck.get("resume").catch(() => ({ body: "" }))).body;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.match(body, /^second /, "the waiting push was deployed after the restart");
      const refs = execFileSync("git", ["ls-remote", deck.sshUrl("resume")], { env: deck.gitEnv(), encoding: "utf8" });
      assert.match(refs, new RegExp(`^${secondSha}\trefs/heads/master$`, "m"), "deck moved the branch the push was for");
      assert.doesNotMatch(refs, /refs\/deck\//, "the kept commit is let go once deployed");
      const [latest] = JSON.parse((await deck.ssh("builds:list resume --json")).stdout) as { commit: string; status: string }[];
      assert.deepEqual([latest.commit, latest.status], [secondSha, "succeeded"]);
    });
  });
}
