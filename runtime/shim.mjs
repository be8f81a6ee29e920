// Supervisor for one app process: `node runtime/shim.mjs <spec-file>`, the process's environment as
// JSON on stdin (`{"env": {...}}`).
//
// ProcessRuntime starts one shim per process, detached in its own session, so app processes keep
// running (and keep being restarted) while the deck server is down or restarting. The shim runs the
// argv it is given (the sandbox and cgroup wrappers included) in its own process group, appends its
// output to the app's log file, restarts it with backoff when it exits, keeps `<id>.json` in the
// state dir current, and on SIGTERM/SIGINT/SIGHUP stops the whole group (SIGKILL after the grace
// period), removes the process's cgroup and its files.
//
// The environment holds the app's secrets: it only ever lives in this process's memory (and the
// child's), never in a file, so the shim reads it from a pipe and keeps it for every restart.
import { spawn } from "node:child_process";
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import {
  closeInheritedFds,
  LAUNCHER_ENV,
  launchStdio,
  writeEnvPayload,
  descendants,
  formatLogLine,
  HEALTHY_UPTIME_MS,
  isGroupAlive,
  killAndRemoveCgroup,
  LineSplitter,
  readOomKills,
  readProcStat,
  restartDelayMs,
  signalGroup,
  signalProcess,
  sleep,
  writeJsonAtomic,
} from "./shim-lib.mjs";

/** Appends to the log file, reopening it when it was rotated or deleted under us. */
/** An app's log moves aside past its size limit (one older file is kept); checked every LOG_SIZE_CHECK_BYTES. */
const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;
const LOG_SIZE_CHECK_BYTES = 64 * 1024;

class LogFile {
  constructor(path, maxBytes) {
    this.path = path;
    this.maxBytes = maxBytes;
    this.checkedAt = Date.now();
    this.open();
  }

  open() {
    mkdirSync(dirname(this.path), { recursive: true });
    this.fd = openSync(this.path, "a", 0o640);
    this.ino = fstatSync(this.fd).ino;
    this.sinceSizeCheck = 0;
  }

  /**
   * An app that prints without pause must not fill the disk: past `maxBytes` the log moves to
   * `LOG.1` (replacing the one before) and a new one starts. The app's other supervisors notice the
   * move and follow within a second.
   */
  rotateIfFull(bytes) {
    this.sinceSizeCheck += bytes;
    if (this.sinceSizeCheck < LOG_SIZE_CHECK_BYTES) return;
    this.sinceSizeCheck = 0;
    if (fstatSync(this.fd).size < this.maxBytes) return;
    try {
      renameSync(this.path, `${this.path}.1`);
    } catch {
      // another supervisor of the app moved it first
    }
    closeSync(this.fd);
    this.open();
  }

  reopenIfMoved() {
    const now = Date.now();
    if (now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    let moved = false;
    try {
      moved = statSync(this.path).ino !== this.ino;
    } catch {
      moved = true;
    }
    if (!moved) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.open();
  }

  // Whole lines in one O_APPEND write: lines of several processes of the app interleave, never split.
  write(text) {
    try {
      this.reopenIfMoved();
      this.rotateIfFull(writeSync(this.fd, text));
    } catch {
      // A full disk or a removed log directory must not take the app down with the supervisor.
    }
  }

  close() {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

closeInheritedFds();

const specFile = process.argv[2];
if (!specFile) {
  process.stderr.write("usage: shim.mjs <spec-file>\n");
  process.exit(2);
}
const shimSpec = JSON.parse(readFileSync(specFile, "utf8"));
const { spec } = shimSpec;
const childEnv = await readEnv();
const name = `${spec.type}.${spec.index}`;
const log = new LogFile(spec.logFile, shimSpec.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES);

const record = {
  id: shimSpec.id,
  app: spec.app,
  release: spec.release,
  generation: spec.generation,
  type: spec.type,
  index: spec.index,
  ...(spec.port !== undefined ? { port: spec.port } : {}),
  ...(spec.port !== undefined && spec.host !== undefined ? { host: spec.host } : {}),
  state: "starting",
  restarts: 0,
  startedAt: new Date().toISOString(),
  shimPid: process.pid,
  specFile,
  command: spec.command,
  cwd: spec.cwd,
  logFile: spec.logFile,
  ...(shimSpec.cgroup ? { cgroupDirs: shimSpec.cgroup.dirs } : {}),
};

/** The current (or last) child: { proc, pgid, startedAt, exited: Promise, outputDone: Promise }. */
let current;
let consecutiveCrashes = 0;
let stopping = false;
let restartTimer;

function deckLog(text) {
  log.write(formatLogLine("deck", name, text));
}

function saveState() {
  writeJsonAtomic(shimSpec.stateFile, record);
}

function pipeOutput(stream) {
  const splitter = new LineSplitter();
  const writeLines = (lines) => {
    if (lines.length === 0) return;
    const now = new Date();
    log.write(lines.map((l) => formatLogLine("app", name, l, now)).join(""));
  };
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => writeLines(splitter.push(chunk)));
  return new Promise((resolve) => {
    stream.on("close", () => {
      writeLines(splitter.flush());
      resolve();
    });
  });
}

function describeExit(code, signal, error) {
  if (error) return `error (${error.message})`;
  if (code !== null) return `status ${code}`;
  return `signal ${signal}`;
}

/** The environment, from stdin: read to the end before anything starts, then kept in memory only. */
async function readEnv() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  try {
    const { env } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (env && typeof env === "object") return env;
  } catch {
    // reported below
  }
  process.stderr.write("shim.mjs: expected {\"env\": {...}} on stdin\n");
  process.exit(2);
}

/**
 * A sandboxed child is the sandbox's outer process: killing it kills everything inside at once
 * (SIGKILL), so a graceful signal goes to the processes inside it instead.
 */
function signalChild(child, signal) {
  if (child.pgid === undefined) return;
  if (shimSpec.sandboxed && signal !== "SIGKILL") {
    for (const pid of descendants(child.pgid)) signalProcess(pid, signal);
  } else {
    signalGroup(child.pgid, signal);
  }
}

function startChild() {
  if (stopping) return;
  deckLog(`Starting process with command \`${spec.command}\``);

  const [file, ...args] = shimSpec.argv;
  const oomKillsBefore = shimSpec.cgroup ? readOomKills(shimSpec.cgroup.oomFile) : 0;
  // Under the app's uid the env goes through a pipe the sandbox reads after the uid drop (shim-lib.mjs).
  const envOnFd = shimSpec.envOnFd === true;
  const proc = spawn(file, args, { cwd: spec.cwd, env: envOnFd ? { ...LAUNCHER_ENV } : childEnv, detached: true, stdio: launchStdio(envOnFd) });
  if (envOnFd) writeEnvPayload(proc, childEnv);
  let resolveExited;
  const child = {
    proc,
    pgid: proc.pid,
    oomKillsBefore,
    startedAt: Date.now(),
    exited: new Promise((resolve) => (resolveExited = resolve)),
    outputDone: Promise.all([pipeOutput(proc.stdout), pipeOutput(proc.stderr)]),
  };
  current = child;
  let handled = false;
  const onGone = (code, signal, error) => {
    if (handled) return;
    handled = true;
    resolveExited();
    onChildExit(child, code, signal, error);
  };
  proc.on("exit", (code, signal) => onGone(code, signal));
  // Without a pid the spawn itself failed (e.g. the cwd vanished): no exit event will follow.
  proc.on("error", (error) => {
    if (proc.pid === undefined) onGone(null, null, error);
  });

  if (proc.pid !== undefined) {
    record.pid = proc.pid;
    record.pgid = proc.pid;
    record.childStartTime = readProcStat(proc.pid)?.startTime;
    record.state = "running";
    record.startedAt = new Date(child.startedAt).toISOString();
    saveState();
  }
}

function onChildExit(child, code, signal, error) {
  delete record.pid;
  delete record.childStartTime;
  let how = describeExit(code, signal, error);
  if (shimSpec.cgroup && readOomKills(shimSpec.cgroup.oomFile) > child.oomKillsBefore) {
    how += ` (out of memory: over its limit of ${Math.round(shimSpec.cgroup.memoryBytes / 1024 / 1024)} MB)`;
  }
  if (stopping) {
    deckLog(`Process exited with ${how}`);
    return;
  }
  if (Date.now() - child.startedAt >= HEALTHY_UPTIME_MS) consecutiveCrashes = 0;
  consecutiveCrashes += 1;
  const delay = restartDelayMs(consecutiveCrashes);
  deckLog(`Process exited with ${how}; restarting in ${delay / 1000}s`);
  record.state = "crashed";
  saveState();
  // Leftovers of the crashed process (background jobs of its shell) would hold its port.
  if (child.pgid !== undefined) signalGroup(child.pgid, "SIGKILL");
  restartTimer = setTimeout(() => void restart(child), delay);
}

async function restart(previous) {
  if (previous.pgid !== undefined) await waitGroupGone(previous.pgid, 5000);
  if (stopping) return;
  record.restarts += 1;
  startChild();
}

async function waitGroupGone(pgid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (isGroupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function readStopGrace() {
  try {
    const grace = JSON.parse(readFileSync(shimSpec.stopFile, "utf8")).graceMs;
    if (Number.isFinite(grace) && grace >= 0) return grace;
  } catch {
    // signalled by something other than ProcessRuntime.stop()
  }
  return shimSpec.graceMs;
}

async function stop(signalName) {
  if (stopping) return;
  stopping = true;
  clearTimeout(restartTimer);
  const graceMs = readStopGrace();
  const child = current;
  const pgid = child?.pgid;
  if (pgid !== undefined && isGroupAlive(pgid)) {
    deckLog(`Stopping (SIGTERM)${signalName === "SIGTERM" ? "" : ` on ${signalName}`}`);
    signalChild(child, "SIGTERM");
    const killTimer = setTimeout(() => {
      deckLog(`Process did not stop within ${graceMs / 1000}s of SIGTERM; sending SIGKILL`);
      signalGroup(pgid, "SIGKILL");
    }, graceMs);
    // A process stuck in uninterruptible sleep cannot be waited for forever; the shim still exits.
    await waitGroupGone(pgid, graceMs + 10_000);
    clearTimeout(killTimer);
    await Promise.race([child.exited, sleep(1000)]);
    await Promise.race([child.outputDone, sleep(500)]);
  }
  await finish(0);
}

function removeFile(path) {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

async function finish(status) {
  record.state = "stopped";
  delete record.pid;
  // Whatever escaped the process group (a daemonised helper, a setsid child) goes with the cgroup.
  for (const dir of shimSpec.cgroup?.dirs ?? []) {
    await killAndRemoveCgroup(dir).catch((e) => deckLog(`Could not remove the cgroup ${dir}: ${e.message}`));
  }
  removeFile(shimSpec.stateFile);
  removeFile(shimSpec.stopFile);
  removeFile(specFile);
  log.close();
  process.exit(status);
}

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => void stop(sig));

process.on("uncaughtException", (err) => {
  deckLog(`Supervisor failed: ${err?.message ?? err}; stopping process`);
  if (current?.pgid !== undefined) signalGroup(current.pgid, "SIGKILL");
  void finish(1);
});

if (shimSpec.notice) deckLog(shimSpec.notice);
saveState();
startChild();
