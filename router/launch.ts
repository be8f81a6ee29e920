/**
 * Starting and stopping the router process from the deck server.
 *
 * The router is spawned detached (its own session and process group) with its output going to a log
 * file, so neither a SIGKILL of the deck server nor a Ctrl-C in its terminal takes traffic down. The
 * process started is the router's supervisor (supervisor.ts): it restarts the worker that serves
 * when that one dies, and the pid file names it.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { DeckError } from "../core/index.ts";
import { probeRouter, type RouterHealth } from "./control-client.ts";
import { routerPaths } from "./paths.ts";

export interface EnsureRouterOptions {
  dataDir: string;
  /** Environment for a newly started router (DECK_HOST, DECK_HTTP_PORT, ...); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The router's stdout and stderr are appended here. */
  logFile: string;
  /** How long a new router has to answer /health (default 10 s). */
  timeoutMs?: number;
}

export interface EnsureRouterResult {
  pid: number;
  /** False when a router was already running and is reused. */
  started: boolean;
}

const MAIN_SCRIPT = fileURLToPath(new URL("./main.ts", import.meta.url));
// Resolved here, not by the child, so the spawn works from any working directory.
const TSX_LOADER = import.meta.resolve("tsx");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lastLines(file: string, count: number): string {
  try {
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    return lines.slice(-count).join(" | ");
  } catch {
    return "(no log)";
  }
}

/**
 * The router's health when it answers; a worker still answering for a supervisor that was killed (it
 * exits within moments) does not count.
 */
export async function answering(socket: string, timeoutMs?: number): Promise<RouterHealth | undefined> {
  const health = await probeRouter(socket, timeoutMs);
  return health !== undefined && isAlive(health.pid) ? health : undefined;
}

/**
 * Reuses the router answering on the data dir's socket, or starts one and waits until it answers. A
 * router whose supervisor runs but does not answer yet (it is replacing its worker) is waited for.
 */
export async function ensureRouter(options: EnsureRouterOptions): Promise<EnsureRouterResult> {
  const paths = routerPaths(options.dataDir);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const running = await answering(paths.socket);
  if (running) return { pid: running.pid, started: false };
  const supervisor = await runningRouterPid(options.dataDir);
  if (supervisor !== undefined) {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
      const health = await answering(paths.socket, 500);
      if (health) return { pid: health.pid, started: false };
      if (!isAlive(supervisor)) break;
    }
    if (isAlive(supervisor)) {
      throw new DeckError("router_failed", `the router (pid ${supervisor}) runs but does not answer on ${paths.socket}; see ${options.logFile}, or stop it with \`deck down\``, { logFile: options.logFile });
    }
  }

  await mkdir(paths.runDir, { recursive: true });
  await mkdir(dirname(options.logFile), { recursive: true });
  const logFd = openSync(options.logFile, "a");
  let child;
  try {
    child = spawn(process.execPath, ["--import", TSX_LOADER, MAIN_SCRIPT], {
      detached: true,
      stdio: ["ignore", logFd, logFd],
      env: { ...(options.env ?? process.env), DECK_DATA_DIR: options.dataDir },
    });
  } finally {
    closeSync(logFd);
  }
  let exit: string | undefined;
  child.once("exit", (code, signal) => (exit = signal ? `was killed by ${signal}` : `exited with code ${code}`));
  child.once("error", (e) => (exit = `could not be started: ${e.message}`));
  child.unref();

  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const health = await answering(paths.socket, 500);
    // Another router may have won a race to the socket; then that one is the router to use.
    if (health) return { pid: health.pid, started: health.pid === child.pid };
    if (exit !== undefined) {
      throw new DeckError("router_failed", `the router ${exit} before answering; log ${options.logFile}: ${lastLines(options.logFile, 3)}`, { logFile: options.logFile });
    }
    await sleep(100);
  }
  if (child.pid !== undefined && exit === undefined) child.kill("SIGKILL");
  throw new DeckError("router_failed", `the router did not answer on ${paths.socket} within ${timeoutMs} ms; see ${options.logFile}`, { logFile: options.logFile });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An exited child not yet reaped still answers kill(0); it is gone all the same.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

/** Guards against a stale pid file naming a pid that now belongs to an unrelated process. */
function isRouterProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(MAIN_SCRIPT);
  } catch {
    return isAlive(pid);
  }
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await sleep(25);
  }
  return !isAlive(pid);
}

/** The pid of the router (its supervisor) named in the pid file, when that process runs; else undefined. */
export async function runningRouterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(routerPaths(dataDir).pidFile, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid) || !isRouterProcess(pid)) return undefined;
  return pid;
}

async function kill(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  if (!(await waitForExit(pid, 5_000))) throw new Error(`router pid ${pid} survived SIGKILL`);
}

/**
 * SIGTERMs the router named in the pid file and waits for it to exit; SIGKILL after graceMs. Its
 * serving worker is killed too if it outlived its supervisor. Resolves with the pid that was stopped,
 * or undefined when no router was running.
 */
export async function stopRouter(dataDir: string, graceMs: number): Promise<number | undefined> {
  const pid = await runningRouterPid(dataDir);
  if (pid === undefined) return undefined;
  const worker = (await probeRouter(routerPaths(dataDir).socket, 500))?.worker;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return undefined;
  }
  if (!(await waitForExit(pid, graceMs))) await kill(pid);
  // A worker leaves when its supervisor does; one that hangs is not left holding app connections.
  if (worker !== undefined && worker !== pid && !(await waitForExit(worker, 1_000)) && isRouterProcess(worker)) await kill(worker);
  return pid;
}
