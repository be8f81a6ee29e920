import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/**
 * Reading a cluster's `postmaster.pid` and finding its processes through /proc. Identity is decided by a
 * process's working directory: every PostgreSQL server process chdir()s into its data directory, so a
 * pid whose cwd is the cluster directory belongs to that cluster, whatever its command line says.
 */

/** The lines of postmaster.pid we use (PostgreSQL's pidfile.h: LOCK_FILE_LINE_*). */
export interface PostmasterPidFile {
  pid: number;
  dataDir: string;
  port: number;
  /** "starting", "ready", "stopping" or "standby"; empty while the postmaster is still initialising. */
  status: string;
}

export function readPostmasterPid(clusterDir: string): PostmasterPidFile | undefined {
  let text: string;
  try {
    text = readFileSync(join(clusterDir, "postmaster.pid"), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const lines = text.split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  return {
    pid: Number.isInteger(pid) && pid > 0 ? pid : 0,
    dataDir: lines[1] ?? "",
    port: Number.parseInt(lines[3] ?? "", 10) || 0,
    status: (lines[7] ?? "").trim(),
  };
}

/** Alive means running or sleeping; a zombie has exited and only waits to be reaped. */
export function isProcessAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat); guards against pid reuse. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

function processCwd(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

/** True when `pid` is a live process of the cluster in `clusterDir` (a real path). */
export function isClusterProcess(pid: number, clusterDir: string): boolean {
  return isProcessAlive(pid) && processCwd(pid) === clusterDir;
}

/** Every live process (postmaster and children) working in `clusterDir` (a real path). */
export function findClusterProcesses(clusterDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && isClusterProcess(pid, clusterDir)) pids.push(pid);
  }
  return pids;
}

export function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves true once none of `pids` is alive, false when `timeoutMs` passes first. */
export async function waitForExit(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!pids.some(isProcessAlive)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
}

/**
 * Stops processes the way PostgreSQL expects: SIGINT (fast shutdown: roll back, checkpoint, exit), then
 * SIGQUIT (immediate shutdown, crash recovery on next start), then SIGKILL.
 */
export async function stopProcesses(pids: number[], graceMs: number): Promise<void> {
  for (const [signal, wait] of [["SIGINT", graceMs], ["SIGQUIT", 5_000], ["SIGKILL", 5_000]] as const) {
    const alive = pids.filter(isProcessAlive);
    if (alive.length === 0) return;
    for (const pid of alive) signalProcess(pid, signal);
    if (await waitForExit(alive, wait)) return;
  }
  throw new Error(`processes ${pids.join(", ")} did not exit after SIGKILL`);
}
