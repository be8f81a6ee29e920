/**
 * Retention trims an app's log in place while real writers append to it: a process holding the file
 * open with O_APPEND (as the process supervisor does) and deck appending by name. No line written
 * during a trim is lost, a follower sees every line once, and `logs` (the tail) reads clean lines.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { appendAppLog, followLog, readLogTail } from "../../deploy/index.ts";
import { pathsFor } from "../../deploy/paths.ts";
import { callerFor } from "../../ops/index.ts";
import { runCommand } from "../../gitd/commands.ts";
import type { DeployDeps } from "../../ops/index.ts";
import { addMember, insertApp, insertOrganization, insertUser } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { trimLog } from "./log-trim.ts";
import { LogRetention } from "./retention.ts";
import { appendLines, appLine, waitFor } from "./test-support.ts";

/** Lines of the file as readers see them (blank lines left by a trim skipped). */
const readLines = (file: string) => readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "");
const seqOf = (line: string) => Number(/ seq (\d+) /.exec(line)?.[1]);

/** A writer like the process supervisor: one O_APPEND descriptor for its whole life, one write per line. */
const WRITER = `
const fs = require("node:fs");
const [file, count] = [process.argv[1], Number(process.argv[2])];
const fd = fs.openSync(file, "a");
for (let i = 0; i < count; i++) {
  fs.writeSync(fd, new Date().toISOString() + " app[web.1]: seq " + i + " " + "x".repeat(40 + (i % 90)) + "\\n");
  // About two seconds in all, so deck's lines and the trims interleave with the writer's.
  if (i % 20 === 0) { const until = Date.now() + 1; while (Date.now() < until); }
}
fs.closeSync(fd);
`;

describe("trimming a log in place", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "deck-retention-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("loses no line written during trims, by a writer holding the file open or one appending by name", async () => {
    const file = join(dir, "busy.log");
    const total = 40_000;
    const maxBytes = 512 * 1024;
    appendLines(file, [appLine(Date.now(), "deck", "deploy", "v1 is live")]);

    const followed: string[] = [];
    const stopFollowing = new AbortController();
    const following = followLog(file, (l) => void followed.push(l), stopFollowing.signal, { intervalMs: 5 });

    // A follower starts at the end of the file: once a line written now reaches it, it has started.
    await waitFor("the follower to start", () => {
      appendAppLog(file, "deck[deploy]", "follower sync");
      return followed.length > 0;
    });
    const writer = spawn(process.execPath, ["-e", WRITER, file, String(total)], { stdio: "ignore" });
    const exited = new Promise<number | null>((resolve) => writer.on("exit", (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));

    // Deck's own lines, appended by name meanwhile, and a trim every 20 ms (the job runs every minute):
    // a follower further behind than the size limit would lose what was trimmed before it read it.
    let deckLines = 0;
    let trims = 0;
    let removed = 0;
    await Promise.all([
      (async () => {
        while (!done) {
          appendAppLog(file, "deck[deploy]", `seq ${deckLines++} from deck`);
          await new Promise((r) => setTimeout(r, 1));
        }
      })(),
      (async () => {
        while (!done) {
          const r = await trimLog(file, { maxBytes, beforeMs: 0 });
          if (r.removedBytes > 0) trims++;
          removed += r.removedBytes;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })(),
    ]);
    assert.equal(await exited, 0);
    await trimLog(file, { maxBytes, beforeMs: 0 });
    assert.ok(trims >= 5, `only ${trims} trims ran`);
    assert.ok(statSync(file).size <= maxBytes, `the log is ${statSync(file).size} bytes`);

    // What is left is the newest lines of each writer, with none missing in between.
    const left = readLines(file);
    for (const [who, count] of [["app[web.1]", total], ["deck[deploy]", deckLines]] as const) {
      const seqs = left.filter((l) => l.includes(` ${who}: seq `)).map(seqOf);
      assert.ok(seqs.length > 0, `${who}: no line left`);
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => count - seqs.length + i), `${who}: the newest lines, none missing`);
    }
    assert.ok(left.every((l) => /^\d{4}-\d{2}-\d{2}T[\d:.]+Z (app|deck)\[[a-z0-9.]+\]: seq \d+ /.test(l)), "every line is whole");

    // A follower saw every line once, in order, although the file moved under it.
    await waitFor("the follower to read the last line", () => followed.some((l) => l.includes(` app[web.1]: seq ${total - 1} `)));
    await waitFor("the follower to read deck's last line", () => followed.some((l) => l.endsWith(`seq ${deckLines - 1} from deck`)));
    stopFollowing.abort();
    await following;
    assert.deepEqual(followed.filter((l) => l.includes(" app[web.1]: ")).map(seqOf), Array.from({ length: total }, (_, i) => i));
    assert.deepEqual(followed.filter((l) => l.includes(" deck[deploy]: seq ")).map(seqOf), Array.from({ length: deckLines }, (_, i) => i));
    assert.ok(removed > 1024 * 1024, `${removed} bytes trimmed`);

    // `logs APP -n 3` reads clean lines.
    assert.deepEqual(await readLogTail(file, 3), left.slice(-3));
  });

  it("drops lines older than the age limit; a cut inside the first block blanks them", async () => {
    const file = join(dir, "aged.log");
    const now = Date.now();
    const old = Array.from({ length: 20 }, (_, i) => appLine(now - 10 * 86_400_000 + i, "app", "web.1", `old ${i}`));
    const fresh = Array.from({ length: 5 }, (_, i) => appLine(now - 60_000 + i, "app", "web.1", `fresh ${i}`));
    appendLines(file, [...old, ...fresh]);
    const r = await trimLog(file, { maxBytes: 1024 ** 3, beforeMs: now - 7 * 86_400_000 });
    assert.equal(r.removedBytes, 0, "less than a block of old lines: blanked, not cut");
    assert.deepEqual(readLines(file), fresh);
    assert.deepEqual(await readLogTail(file, 100), fresh);

    const many = join(dir, "aged-many.log");
    const oldMany = Array.from({ length: 2000 }, (_, i) => appLine(now - 10 * 86_400_000 + i, "app", "web.1", `old ${i}`));
    appendLines(many, [...oldMany, ...fresh]);
    const r2 = await trimLog(many, { maxBytes: 1024 ** 3, beforeMs: now - 7 * 86_400_000 });
    assert.ok(r2.removedBytes > 0 && r2.removedBytes % 4096 === 0, `${r2.removedBytes} bytes cut`);
    assert.deepEqual(readLines(many), fresh);
    assert.deepEqual(await readLogTail(many, 2), fresh.slice(-2));
    assert.deepEqual(await trimLog(many, { maxBytes: 1024 ** 3, beforeMs: now - 7 * 86_400_000 }), { removedBytes: 0, sizeBefore: statSync(many).size }, "a second pass has nothing to do");
  });
});

for (const backend of await databaseBackends()) {
  describe(`log retention per app (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let deps: DeployDeps;
    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      deps = { db: t.db.pool, paths: pathsFor(t.dataDir), log: () => undefined } as unknown as DeployDeps;
    });
    after(async () => t?.cleanup());

    it("logs:retention shows and sets an app's limits; the job trims each app to its own", async () => {
      const db = t.db.pool;
      const admin = await insertUser(db, { email: "admin@retention.test", isAdmin: false });
      const member = await insertUser(db, { email: "member@retention.test", isAdmin: false });
      const org = await insertOrganization(db, { name: "Ret", slug: "ret" });
      await addMember(db, org.id, admin.id, "admin");
      await addMember(db, org.id, member.id, "member");
      await insertApp(db, { name: "small", orgId: org.id, createdBy: admin.id });
      await insertApp(db, { name: "roomy", orgId: org.id, createdBy: admin.id });
      const run = async (who: typeof admin, ...words: string[]) => {
        const out: string[] = [];
        const err: string[] = [];
        const status = await runCommand(deps, await callerFor(db, who, "ssh"), words, { out: (l) => void out.push(l), err: (l) => void err.push(l), signal: new AbortController().signal });
        return { status, out, err };
      };

      assert.deepEqual(await run(admin, "logs:retention", "small"), { status: 0, out: ["=== small log retention", "size: 50 MiB (default)", "age:  7d (default)"], err: [] });
      assert.deepEqual((await run(admin, "logs:retention", "small", "--size", "1m", "--age", "2d")).out, ["=== small log retention", "size: 1 MiB", "age:  2d"]);
      assert.deepEqual((await run(admin, "logs:retention", "small", "--age", "default", "--json")).out, [JSON.stringify({ app: "small", size: { value: 1024 * 1024, default: false }, age: { value: 7 * 86_400, default: true } })]);
      assert.deepEqual((await run(admin, "logs:retention", "small", "--size", "10k")).err, ['deck: error (bad_argument): --size takes a size from 1m to 1g (like 100m or 500m), or default; got "10k"']);
      assert.deepEqual((await run(admin, "logs:retention", "small", "--age", "5x")).err, ['deck: error (bad_argument): --age takes a duration from 1h to 400d (like 12h, 14d or 2w), or default; got "5x"']);
      const denied = await run(member, "logs:retention", "small", "--size", "2m");
      assert.equal(denied.status, 1);
      assert.match(denied.err[0]!, /^deck: error \(forbidden\): permission denied: drains:manage on small/);

      const now = Date.now();
      const big = Array.from({ length: 30_000 }, (_, i) => appLine(now - 60_000 + i, "app", "web.1", `line ${i} ${"y".repeat(80)}`));
      mkdirSync(join(t.dataDir, "logs"), { recursive: true });
      appendLines(deps.paths.appLog("small"), big);
      appendLines(deps.paths.appLog("roomy"), big);
      writeFileSync(`${deps.paths.appLog("roomy")}.1`, "moved aside by the supervisor\n");
      utimesSync(`${deps.paths.appLog("roomy")}.1`, new Date(now - 30 * 86_400_000), new Date(now - 30 * 86_400_000));

      const job = new LogRetention({ db, appLog: deps.paths.appLog, log: () => undefined });
      const outcomes = await job.runOnce();
      assert.deepEqual(outcomes.map((o) => [o.app, o.removedBytes > 0, o.removedRotated]), [["roomy", false, true], ["small", true, false]]);
      assert.ok(statSync(deps.paths.appLog("small")).size <= 1024 * 1024, "small is within its 1 MiB");
      assert.equal(readLines(deps.paths.appLog("small")).at(-1), big.at(-1));
      assert.equal(readLines(deps.paths.appLog("roomy")).length, big.length, "roomy is within the 50 MiB default");

      // `logs` shows the kept lines exactly as written.
      const tail = await run(admin, "logs", "small", "-n", "2");
      assert.deepEqual(tail, { status: 0, out: big.slice(-2), err: [] });
    });
  });
}

