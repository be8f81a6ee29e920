import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chown, mkdtemp, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { readState, ROOT_BASE_DIR } from "./embedded-layout.ts";
import { destroyEmbeddedServer, openDatabase, sql, type Database } from "./index.ts";
import { findClusterProcesses, isProcessAlive, readPostmasterPid, signalProcess } from "./postmaster.ts";

const HOLD_SCRIPT = fileURLToPath(new URL("./test-fixtures/hold-database.ts", import.meta.url));
const ROUND_TRIP_SCRIPT = fileURLToPath(new URL("./test-fixtures/round-trip.ts", import.meta.url));
const isRoot = process.getuid?.() === 0;

/**
 * A temp data dir for one test. Its cleanup closes every database opened through `open` first, then
 * removes the embedded cluster and the files, even when the test failed half-way.
 */
async function tempDataDir(t: TestContext, parent = tmpdir()): Promise<{ dataDir: string; open(): Promise<Database> }> {
  const dataDir = await mkdtemp(join(parent, "deck-store-"));
  const opened: Database[] = [];
  t.after(async () => {
    for (const db of opened.reverse()) await db.close().catch(() => {});
    await destroyEmbeddedServer(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });
  return {
    dataDir,
    open: async () => {
      const db = await openDatabase({ dataDir });
      opened.push(db);
      return db;
    },
  };
}

async function clusterDirOf(dataDir: string): Promise<string> {
  const state = await readState(join(dataDir, "postgres", "state.json"));
  assert.ok(state, "state.json exists");
  return state.clusterDir;
}

const userRow = z.object({ id: z.number(), email: z.string(), created_at: z.string() });

async function emails(db: Database): Promise<string[]> {
  return [...(await db.pool.anyFirst(sql.type(z.object({ email: z.string() }))`SELECT email FROM users ORDER BY id`))];
}

test("embedded: first open migrates, round-trips rows, and close stops the postmaster", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const db = await open();
  assert.equal(db.embedded, true);
  assert.match(db.url, /^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/deck$/);

  const tables = await db.pool.anyFirst(sql.type(z.object({ t: z.string().nullable() }))`
    SELECT to_regclass(name)::text AS t FROM unnest(${sql.array(["users", "apps", "releases", "audit_log", "schema_migrations"], "text")}) AS name`);
  assert.deepEqual(tables, ["users", "apps", "releases", "audit_log", "schema_migrations"]);

  const user = await db.pool.one(sql.type(userRow)`INSERT INTO users (email) VALUES ('a@example.com') RETURNING id, email, created_at`);
  assert.equal(user.email, "a@example.com");
  assert.equal(typeof user.id, "number");
  assert.match(user.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(user.created_at) - Date.now()) < 60_000);

  const clusterDir = await clusterDirOf(dataDir);
  const pid = readPostmasterPid(clusterDir)?.pid ?? 0;
  assert.ok(isProcessAlive(pid), "postmaster runs while the database is open");
  await db.close();
  assert.equal(isProcessAlive(pid), false, "postmaster is gone after close");
  assert.deepEqual(findClusterProcesses(clusterDir), []);
  assert.equal(readPostmasterPid(clusterDir), undefined);
});

test("embedded: reopening an existing cluster is fast and keeps the data", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const first = await open();
  await first.pool.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('kept@example.com')`);
  await first.close();

  const started = Date.now();
  const second = await open();
  const elapsed = Date.now() - started;
  assert.deepEqual(await emails(second), ["kept@example.com"]);
  assert.ok(elapsed < 2_000, `reopen took ${elapsed} ms`);
});

/** Starts a deck stand-in that opens the database and waits; resolves once it is ready. */
async function startHolder(t: TestContext, dataDir: string, email: string, detached = false): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", HOLD_SCRIPT, dataDir, email], { stdio: ["ignore", "pipe", "inherit"], detached });
  t.after(() => {
    if (child.pid && child.exitCode === null && child.signalCode === null) signalProcess(child.pid, "SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk) => {
      out += String(chunk);
      if (out.includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`child exited with ${code} before it was ready`)));
  });
  return child;
}

test("embedded: a deck process killed with SIGKILL leaves a postmaster that the next open takes over", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const child = await startHolder(t, dataDir, "before-kill@example.com");
  const clusterDir = await clusterDirOf(dataDir);
  const orphan = readPostmasterPid(clusterDir)?.pid ?? 0;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  signalProcess(child.pid!, "SIGKILL");
  await exited;
  assert.ok(isProcessAlive(orphan), "the postmaster outlives the killed deck process");

  const db = await open();
  assert.deepEqual(await emails(db), ["before-kill@example.com"]);
  await db.close();
  assert.equal(isProcessAlive(orphan), false, "the adopted postmaster is stopped by close");
  assert.deepEqual(findClusterProcesses(clusterDir), [], "no server process of the cluster is left after close");
});

test("embedded: Ctrl-C in deck's terminal (SIGINT to its process group) does not reach the postmaster", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const child = await startHolder(t, dataDir, "ctrl-c@example.com", true);
  const clusterDir = await clusterDirOf(dataDir);
  const postmaster = readPostmasterPid(clusterDir)?.pid ?? 0;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(-child.pid!, "SIGINT");
  await exited;
  assert.ok(isProcessAlive(postmaster), "the postmaster keeps running");
  const db = await open();
  assert.deepEqual(await emails(db), ["ctrl-c@example.com"]);
});

test("embedded: a postmaster killed with SIGKILL is recovered on the next open", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const first = await open();
  await first.pool.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('crash@example.com')`);
  const clusterDir = await clusterDirOf(dataDir);
  signalProcess(readPostmasterPid(clusterDir)!.pid, "SIGKILL");
  await first.close().catch(() => {});

  const db = await open();
  assert.deepEqual(await emails(db), ["crash@example.com"]);
});

test("embedded: a stale postmaster.pid does not prevent the start", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  await (await open()).close();
  const clusterDir = await clusterDirOf(dataDir);
  // A pid that certainly ran once and is gone now.
  const gone = spawn("true");
  await new Promise((resolve) => gone.once("exit", resolve));
  await writeFile(join(clusterDir, "postmaster.pid"), `${gone.pid}\n${clusterDir}\n1700000000\n5432\n\n127.0.0.1\n  1234  5678\nready   \n`);

  const db = await open();
  assert.equal(await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT 1 AS n`), 1);
  assert.notEqual(readPostmasterPid(clusterDir)?.pid, gone.pid);
});

test("embedded as root: works with the data dir inside a 0700 directory under /root", { skip: isRoot ? false : "needs root" }, async (t) => {
  const parent = await mkdtemp("/root/.deck-test-");
  // Registered after the data dir's own cleanup so that it runs last: hooks run in order.
  const { dataDir, open } = await tempDataDir(t, parent);
  t.after(() => rm(parent, { recursive: true, force: true }));
  assert.equal((await stat(parent)).mode & 0o777, 0o700);

  const db = await open();
  await db.pool.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('root@example.com')`);
  assert.deepEqual(await emails(db), ["root@example.com"]);
  const clusterDir = await clusterDirOf(dataDir);
  assert.ok(clusterDir.startsWith(`${ROOT_BASE_DIR}/`), `cluster at ${clusterDir}`);
  const owner = (await stat(clusterDir)).uid;
  assert.notEqual(owner, 0, "the cluster belongs to the postgres user, not root");
  await db.close();
  assert.deepEqual(findClusterProcesses(clusterDir), []);
});

/** The uid of `nobody` when deck runs as root and that user can read this checkout, else why not. */
function nobodyUser(): { uid: number; gid: number } | string {
  if (!isRoot) return "needs root to switch to an unprivileged user";
  const ids = { uid: 65534, gid: 65534 };
  const probe = spawnSync("test", ["-r", ROUND_TRIP_SCRIPT], ids);
  return probe.status === 0 ? ids : "the checkout is not readable by nobody";
}

test("embedded as an unprivileged user: the cluster lives in the data dir", { skip: typeof nobodyUser() === "string" ? (nobodyUser() as string) : false }, async (t) => {
  const ids = nobodyUser() as { uid: number; gid: number };
  const { dataDir } = await tempDataDir(t);
  await chown(dataDir, ids.uid, ids.gid);
  const run = spawnSync(process.execPath, ["--import", "tsx", ROUND_TRIP_SCRIPT, dataDir], { ...ids, encoding: "utf8", env: { PATH: process.env.PATH, HOME: dataDir } });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), ["user@example.com"]);
  const clusterDir = await clusterDirOf(dataDir);
  assert.equal(clusterDir, join(await realpath(dataDir), "postgres", "data"));
  assert.equal((await stat(clusterDir)).uid, ids.uid);
  assert.deepEqual(findClusterProcesses(clusterDir), []);
});

test("embedded: two deck processes opening a new data dir at once share one server", async (t) => {
  const { dataDir, open } = await tempDataDir(t);
  const [a, b] = await Promise.all([startHolder(t, dataDir, "a@example.com"), startHolder(t, dataDir, "b@example.com")]);
  const clusterDir = await clusterDirOf(dataDir);
  assert.equal(findClusterProcesses(clusterDir).filter((pid) => readPostmasterPid(clusterDir)?.pid === pid).length, 1);
  for (const child of [a, b]) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    signalProcess(child.pid!, "SIGKILL");
    await exited;
  }
  const db = await open();
  assert.deepEqual((await emails(db)).sort(), ["a@example.com", "b@example.com"]);
});
