// Helpers shared by the supervisor shim and ProcessRuntime. Plain JavaScript with no dependencies so the
// shim starts in ~0.1 s (a TypeScript loader would add ~0.3 s per process) and keeps running even if the
// installed packages change under a long-lived shim. Types live in shim-lib.d.mts.
import { accessSync, closeSync, constants, openSync, readdirSync, readFileSync, renameSync, writeSync } from "node:fs";
import { readFile, rmdir, writeFile } from "node:fs/promises";

/** Backoff after the nth consecutive crash: 1 s, 2 s, 4 s … capped at 30 s. */
export const MAX_RESTART_DELAY_MS = 30_000;
/** A child that stayed up this long counts as healthy again: the next crash restarts after 1 s. */
export const HEALTHY_UPTIME_MS = 30_000;

export function restartDelayMs(consecutiveCrashes) {
  const n = Math.max(1, consecutiveCrashes);
  return Math.min(1000 * 2 ** Math.min(n - 1, 16), MAX_RESTART_DELAY_MS);
}

export function formatLogLine(source, name, text, date = new Date()) {
  return `${date.toISOString()} ${source}[${name}]: ${text}\n`;
}

const MAX_PARTIAL_LINE = 64 * 1024;

/** Splits a byte stream into lines; a line longer than 64 KiB is cut so memory stays bounded. */
export class LineSplitter {
  #rest = "";

  push(chunk) {
    const text = this.#rest + chunk;
    const parts = text.split("\n");
    this.#rest = parts.pop() ?? "";
    const lines = parts.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
    while (this.#rest.length > MAX_PARTIAL_LINE) {
      lines.push(this.#rest.slice(0, MAX_PARTIAL_LINE));
      this.#rest = this.#rest.slice(MAX_PARTIAL_LINE);
    }
    return lines;
  }

  flush() {
    const rest = this.#rest;
    this.#rest = "";
    return rest === "" ? [] : [rest.endsWith("\r") ? rest.slice(0, -1) : rest];
  }
}

/** Reads /proc/<pid>/stat; undefined when the pid does not exist. */
export function readProcStat(pid) {
  let raw;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: parse from the last ")".
  const fields = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], ppid: Number(fields[1]), pgrp: Number(fields[2]), session: Number(fields[3]), startTime: Number(fields[19]) };
}

// Zombies count as gone: pid 1 in containers often never reaps orphans, and a zombie holds no resources.
function isLiveState(state) {
  return state !== "Z" && state !== "X" && state !== "x";
}

export function isProcessAlive(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const stat = readProcStat(pid);
  return stat !== undefined && isLiveState(stat.state);
}

/** True when pid is alive and is the same process that was recorded (pids get reused). */
export function isSameProcess(pid, startTime) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const stat = readProcStat(pid);
  return stat !== undefined && isLiveState(stat.state) && (startTime === undefined || stat.startTime === startTime);
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgid) {
  if (!Number.isInteger(pgid) || pgid <= 1) return [];
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if (e.code === "ESRCH") return [];
  }
  const members = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat && stat.pgrp === pgid && isLiveState(stat.state)) members.push(Number(entry));
  }
  return members;
}

export function isGroupAlive(pgid) {
  return groupMembers(pgid).length > 0;
}

/** Signals a whole process group; a group that is already gone is not an error. */
export function signalGroup(pgid, signal) {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    if (e.code === "ESRCH") return false;
    throw e;
  }
}

export function signalProcess(pid, signal) {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch (e) {
    if (e.code === "ESRCH") return false;
    throw e;
  }
}

/** The argv of a live process, or undefined (zombies have an empty cmdline). */
export function readCmdline(pid) {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (raw === "") return undefined;
    return raw.split("\0").filter((a) => a !== "");
  } catch {
    return undefined;
  }
}

const O_CLOEXEC = 0o2000000;

/**
 * Closes descriptors this process inherited beyond stdio (whatever started deck may leak some): a
 * long-lived shim and its app would otherwise hold them open for days, e.g. keeping a pipe's reader
 * from ever seeing EOF. Node opens all of its own descriptors close-on-exec, so those are kept.
 */
export function closeInheritedFds() {
  let entries;
  try {
    entries = readdirSync("/proc/self/fd");
  } catch {
    return;
  }
  for (const entry of entries) {
    const fd = Number(entry);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    try {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
      if (flags && (parseInt(flags[1], 8) & O_CLOEXEC) === 0) closeSync(fd);
    } catch {
      // the fd used to list the directory is gone by now
    }
  }
}

/** Readers never see a half-written file: write a temp file beside it, then rename over. */
export function writeJsonAtomic(path, value) {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, JSON.stringify(value, null, 2) + "\n");
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The shell Procfile commands run under: bash when present (Heroku's), else POSIX sh. */
export function shellArgv(command) {
  let shell = "/bin/sh";
  try {
    accessSync("/bin/bash", constants.X_OK);
    shell = "/bin/bash";
  } catch {
    // no bash on this machine
  }
  return [shell, "-c", command];
}

/** Live (non-zombie) processes descending from `pid`, found through /proc (children before grandchildren). */
export function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (!stat || !isLiveState(stat.state)) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(entry));
    children.set(stat.ppid, list);
  }
  const out = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift();
    out.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return out;
}

/** The `oom_kill N` count of a cgroup's memory.oom_control (v1) or memory.events (v2); 0 when unreadable. */
export function readOomKills(file) {
  try {
    const match = /^oom_kill (\d+)$/m.exec(readFileSync(file, "utf8"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * SIGKILLs every process in a cgroup directory (v1 or v2) until it is empty, then removes it. A
 * directory that does not exist is fine; one that stays busy for 5 s is an error.
 */
export async function killAndRemoveCgroup(dir) {
  const deadline = Date.now() + 5000;
  for (;;) {
    let pids;
    try {
      pids = (await readFile(`${dir}/cgroup.procs`, "utf8")).split("\n").filter(Boolean).map(Number);
    } catch (e) {
      if (e.code === "ENOENT") return; // no such cgroup
      throw e;
    }
    // v2 (Linux 5.14+) kills the whole subtree in one write; elsewhere the file does not exist (the
    // write fails, which is expected) and each pid is killed in turn below.
    await writeFile(`${dir}/cgroup.kill`, "1").catch(() => undefined);
    for (const pid of pids) signalProcess(pid, "SIGKILL");
    try {
      await rmdir(dir);
      return;
    } catch (e) {
      if (e.code === "ENOENT") return;
      // EBUSY: killed processes are still exiting (or are zombies not yet reaped by their parent).
      if (e.code !== "EBUSY" || Date.now() > deadline) throw e;
    }
    await sleep(50);
  }
}

/**
 * The environment of deck's own part of a sandboxed launch (the cgroup wrapper, bwrap, setpriv): they
 * run as root, so nothing of the app's (LD_PRELOAD, LD_LIBRARY_PATH, GCONV_PATH …) may reach them.
 */
export const LAUNCHER_ENV = Object.freeze({ PATH: "/usr/sbin:/usr/bin:/sbin:/bin" });

/** The fd a sandboxed command's environment arrives on, read once the uid is dropped (see sandbox.ts). */
export const SANDBOX_ENV_FD = 3;

/** `env` as NUL-separated `KEY=value` entries for SANDBOX_ENV_FD; a name that cannot be one is left out. */
export function envPayload(env) {
  const entries = [];
  for (const [key, value] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || value === undefined || String(value).includes("\0")) continue;
    entries.push(`${key}=${value}\0`);
  }
  return Buffer.from(entries.join(""), "utf8");
}

/**
 * Spawn options for a launch: with `envOnFd` the child gets LAUNCHER_ENV and an extra pipe at
 * SANDBOX_ENV_FD, which `writeEnvPayload` fills and closes.
 */
export function launchStdio(envOnFd, stdin = "ignore") {
  return envOnFd ? [stdin, "pipe", "pipe", "pipe"] : [stdin, "pipe", "pipe"];
}

/** Writes `env` to the child's SANDBOX_ENV_FD pipe and closes it (a child gone already is not an error). */
export function writeEnvPayload(child, env) {
  const pipe = child.stdio[SANDBOX_ENV_FD];
  if (!pipe) return;
  pipe.on("error", () => {});
  pipe.end(envPayload(env));
}
