import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { chown, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { DeckError } from "../core/index.ts";
import { exists, generatePassword, readState, resolveLayout, ROOT_BASE_DIR, SUPERUSER, writeState, type EmbeddedLayout, type EmbeddedState } from "./embedded-layout.ts";
import { findClusterProcesses, isClusterProcess, isProcessAlive, processStartTime, readPostmasterPid, stopProcesses } from "./postmaster.ts";

/**
 * An embedded PostgreSQL cluster owned by deck, under the data dir (see embedded-layout.ts for where
 * the files go when deck runs as root).
 *
 * The postmaster runs in its own session so that Ctrl-C in deck's terminal does not reach it, and it
 * outlives a deck process that is killed. The next start recovers from whatever was left: a live
 * postmaster whose deck is gone is adopted (and stopped by the adopter), a postmaster.pid whose process
 * is gone is removed together with any leftover server processes.
 */

const execFileAsync = promisify(execFile);
const HOST = "127.0.0.1";
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 30_000;
const MAX_LOG_BYTES = 10 * 1024 * 1024;

export interface EmbeddedServerOptions {
  dataDir: string;
  log?: (line: string) => void;
}

export interface EmbeddedServer {
  host: string;
  port: number;
  user: string;
  /** Superuser password; keep it out of logs. */
  password: string;
  clusterDir: string;
  /** Pid of the postmaster. */
  pid: number;
  /** True when this process started the server or took over an orphaned one: `stop()` then shuts it down. */
  owned: boolean;
  /** Connection URL for one database of the cluster (contains the password). */
  urlFor(database: string): string;
  /** Fast shutdown when owned; a no-op for a server another live deck process owns. */
  stop(): Promise<void>;
}

export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const log = options.log ?? (() => {});
  // Two deck processes starting on one data dir take turns: the second finds the first's server running.
  const release = await acquireStartLock(join(options.dataDir, "postgres"));
  try {
    const layout = await resolveLayout(options.dataDir);
    const state = await ensureCluster(layout, log);
    for (let attempt = 1; ; attempt++) {
      const running = await findRunningServer(layout, state, log);
      if (running) return running;
      const started = await spawnServer(layout, state, log, attempt);
      if (started !== "retry") return started;
      if (attempt >= 4) throw new DeckError("embedded_start_failed", `embedded PostgreSQL did not start after ${attempt} attempts (log: ${layout.logFile})`);
    }
  } finally {
    await release();
  }
}

/** An exclusive lock file holding the pid of its holder; a lock whose holder is gone is taken over. */
async function acquireStartLock(stateDir: string): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const lockFile = join(stateDir, "start.lock");
  const deadline = Date.now() + START_TIMEOUT_MS * 2;
  for (;;) {
    try {
      await writeFile(lockFile, String(process.pid), { flag: "wx", mode: 0o600 });
      return () => rm(lockFile, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    // A lock file removed since the write above reads as empty, and is then found abandoned below.
    const holder = Number.parseInt(await readFile(lockFile, "utf8").catch(() => ""), 10);
    // An empty file is a lock being written right now, unless it has been empty for a while.
    const abandoned = Number.isNaN(holder) ? Date.now() - (await stat(lockFile).then((st) => st.mtimeMs, () => 0)) > 5_000 : holder !== process.pid && !isProcessAlive(holder);
    if (abandoned) {
      await rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new DeckError("embedded_start_locked", `another deck process (pid ${holder}) is still starting the embedded database (lock: ${lockFile})`);
    await sleep(50);
  }
}

/** Runs initdb on first start. The state (with the password) is written before the cluster appears. */
async function ensureCluster(layout: EmbeddedLayout, log: (line: string) => void): Promise<EmbeddedState> {
  const { clusterDir, stateFile } = layout;
  const initialized = await exists(join(clusterDir, "PG_VERSION"));
  let state = layout.state;
  if (initialized && state) return state;
  if (initialized && !state) {
    throw new DeckError("embedded_state_missing", `${stateFile} is missing but the embedded database exists at ${clusterDir}; restore the state file (it holds the password)`);
  }
  if (state?.initializedAt) {
    throw new DeckError("embedded_cluster_missing", `the embedded database recorded in ${stateFile} is missing (${clusterDir}); restore it, or remove ${stateFile} to start with an empty database`);
  }
  state = state ?? { version: 1, clusterDir, port: await freePort(), password: generatePassword() };
  await writeState(stateFile, state);
  log(`embedded PostgreSQL: creating a new cluster in ${clusterDir}`);
  const tmpDir = `${clusterDir}.init-${process.pid}`;
  const pwFile = join(dirname(clusterDir), `.pwfile-${process.pid}`);
  await rm(tmpDir, { recursive: true, force: true });
  await writeFile(pwFile, state.password + "\n", { mode: 0o600 });
  try {
    if (layout.runAs) await chown(pwFile, layout.runAs.uid, layout.runAs.gid);
    // Builtin C.UTF-8 collation: the same sort order everywhere, independent of the host's locales.
    const args = ["-D", tmpDir, "-U", SUPERUSER, `--pwfile=${pwFile}`, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-instructions"];
    await execFileAsync(join(layout.binDir, "initdb"), args, { ...layout.runAs, cwd: dirname(clusterDir), env: serverEnv() });
  } catch (e) {
    await rm(tmpDir, { recursive: true, force: true });
    const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split("\n").pop();
    throw new DeckError("embedded_init_failed", `creating the embedded PostgreSQL cluster failed: ${stderr}`, {}, { cause: e });
  } finally {
    await rm(pwFile, { force: true });
  }
  await rename(tmpDir, clusterDir);
  state = { ...state, initializedAt: new Date().toISOString() };
  await writeState(stateFile, state);
  return state;
}

/** A live postmaster of this cluster, adopted when the deck process that started it is gone. */
async function findRunningServer(layout: EmbeddedLayout, state: EmbeddedState, log: (line: string) => void): Promise<EmbeddedServer | undefined> {
  const { clusterDir } = layout;
  const pidFile = readPostmasterPid(clusterDir);
  if (pidFile && isClusterProcess(pidFile.pid, clusterDir)) {
    const ready = await waitForStatus(clusterDir, pidFile.pid, START_TIMEOUT_MS);
    if (ready) {
      const ownerAlive = state.owner !== undefined && processStartTime(state.owner.pid) === state.owner.startTime;
      if (!ownerAlive) {
        await writeState(layout.stateFile, { ...state, port: ready.port, owner: self() });
        log(`embedded PostgreSQL: took over the server left running by a stopped deck process (pid ${ready.pid}, port ${ready.port})`);
      }
      return makeServer(layout, state, ready.pid, ready.port, !ownerAlive, log);
    }
    // It was shutting down; wait for it to finish, then start afresh.
    await stopProcesses([pidFile.pid], STOP_GRACE_MS);
  }
  const leftovers = findClusterProcesses(clusterDir);
  if (leftovers.length > 0) {
    log(`embedded PostgreSQL: stopping ${leftovers.length} leftover server process(es) of a crashed postmaster`);
    await stopProcesses(leftovers, 5_000);
  }
  if (readPostmasterPid(clusterDir)) {
    log(`embedded PostgreSQL: removing stale postmaster.pid (pid ${pidFile?.pid ?? "?"} is not running)`);
    await rm(join(clusterDir, "postmaster.pid"), { force: true });
  }
  return undefined;
}

async function spawnServer(layout: EmbeddedLayout, state: EmbeddedState, log: (line: string) => void, attempt: number): Promise<EmbeddedServer | "retry"> {
  const { clusterDir, logFile } = layout;
  const port = attempt === 1 && (await isPortFree(state.port)) ? state.port : await freePort();
  const owned = { ...state, port, owner: self() };
  await writeState(layout.stateFile, owned);
  await rotateLog(logFile);
  const logStart = await fileSize(logFile);
  const logFd = openSync(logFile, "a", 0o600);
  let child: ChildProcess;
  try {
    const args = ["-D", clusterDir, "-p", String(port), "-c", `listen_addresses=${HOST}`, "-c", "unix_socket_directories="];
    child = spawn(join(layout.binDir, "postgres"), args, { ...layout.runAs, cwd: dirname(clusterDir), detached: true, stdio: ["ignore", logFd, logFd], env: serverEnv() });
  } finally {
    closeSync(logFd);
  }
  let exited = false;
  child.once("exit", () => (exited = true));
  child.once("error", () => (exited = true));
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    const pidFile = readPostmasterPid(clusterDir);
    if (pidFile && pidFile.pid === child.pid && pidFile.status === "ready") {
      log(`embedded PostgreSQL ready on ${HOST}:${port} (pid ${child.pid})`);
      return makeServer(layout, owned, child.pid, port, true, log);
    }
    await sleep(15);
  }
  if (!exited && child.pid) await stopProcesses([child.pid], 5_000);
  const output = await readLogSince(logFile, logStart);
  if (/Address already in use|lock file .* already exists/.test(output)) return "retry";
  const reason = output.split("\n").filter((l) => /FATAL|PANIC|ERROR/.test(l)).pop()?.trim() ?? (exited ? "the server exited" : "no answer in time");
  throw new DeckError("embedded_start_failed", `embedded PostgreSQL did not start: ${reason} (log: ${logFile})`);
}

function makeServer(layout: EmbeddedLayout, state: EmbeddedState, pid: number, port: number, owned: boolean, log: (line: string) => void): EmbeddedServer {
  let stopping: Promise<void> | undefined;
  return {
    host: HOST,
    port,
    user: SUPERUSER,
    password: state.password,
    clusterDir: layout.clusterDir,
    pid,
    owned,
    urlFor: (database) => `postgres://${SUPERUSER}:${encodeURIComponent(state.password)}@${HOST}:${port}/${encodeURIComponent(database)}`,
    stop() {
      if (!owned) return Promise.resolve();
      stopping ??= (async () => {
        if (isClusterProcess(pid, layout.clusterDir)) await stopProcesses([pid], STOP_GRACE_MS);
        await writeState(layout.stateFile, { ...state, port, owner: undefined });
        log(`embedded PostgreSQL stopped (pid ${pid})`);
      })();
      return stopping;
    },
  };
}

/** Waits until the postmaster reports "ready"; undefined when it is stopping or exits. */
async function waitForStatus(clusterDir: string, pid: number, timeoutMs: number): Promise<{ pid: number; port: number } | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && isProcessAlive(pid)) {
    const pidFile = readPostmasterPid(clusterDir);
    if (!pidFile || pidFile.pid !== pid || pidFile.status === "stopping") return undefined;
    if (pidFile.status === "ready") return { pid, port: pidFile.port };
    await sleep(15);
  }
  return undefined;
}

function self(): { pid: number; startTime: number } {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? 0 };
}

/** The server gets no secrets from deck's environment, and English messages (its log is parsed). */
function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", ...(process.env.TZ ? { TZ: process.env.TZ } : {}) };
}

async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function rotateLog(logFile: string): Promise<void> {
  if ((await fileSize(logFile)) > MAX_LOG_BYTES) await rename(logFile, `${logFile}.1`);
}

async function readLogSince(logFile: string, offset: number): Promise<string> {
  const handle = await open(logFile, "r");
  try {
    const size = (await handle.stat()).size;
    const length = Math.min(size - offset, 64 * 1024);
    if (length <= 0) return "";
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString("utf8");
  } finally {
    await handle.close();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Stops every process of the data dir's embedded cluster and deletes the cluster and its state: all data
 * in it is gone. For tests and for a deliberate reset.
 */
export async function destroyEmbeddedServer(dataDir: string): Promise<void> {
  const stateDir = join(dataDir, "postgres");
  const state = await readState(join(stateDir, "state.json"));
  if (state) {
    await stopProcesses(findClusterProcesses(state.clusterDir), 5_000);
    await rm(state.clusterDir, { recursive: true, force: true });
    // As root the cluster sits alone in /var/lib/clouddeck/<hash>/; that directory goes too.
    const parent = dirname(state.clusterDir);
    if (dirname(parent) === ROOT_BASE_DIR) await rm(parent, { recursive: true, force: true });
  }
  await rm(stateDir, { recursive: true, force: true });
}
