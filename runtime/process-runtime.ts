import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DeckError } from "../core/errors.ts";
import type { ProcessInfo, ProcessSpec, ProcessStats, Runtime } from "../core/interfaces.ts";
import { readProcessUsage } from "./process-stats.ts";
import { cgroupNameFor, prepareLaunch, type LaunchOptions } from "./launch.ts";
import { runOnce, type RunOnceResult, type RunOnceSpec } from "./run-once.ts";
import {
  isGroupAlive,
  killAndRemoveCgroup,
  isSameProcess,
  readCmdline,
  signalGroup,
  signalProcess,
  sleep,
  writeJsonAtomic,
  type ProcessRecord,
  type ShimSpec,
} from "./shim-lib.mjs";

const SHIM_PATH = fileURLToPath(new URL("./shim.mjs", import.meta.url));
const POLL_MS = 25;
/** stop() gives the shim this long past the grace to finish before killing the shim and group itself. */
const STOP_MARGIN_MS = 2000;
const TYPE_PATTERN = /^[A-Za-z0-9_-]+$/;
const APP_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const STATE_FILE = /^(.+\.\d+)\.json$/;

export interface ProcessRuntimeOptions extends LaunchOptions {
  /** Where spec and state files of the supervised processes live; shared by every deck run on the machine. */
  stateDir: string;
  /** Grace a shim uses when it is signalled by anything other than stop() (e.g. a machine shutdown). */
  defaultGraceMs?: number;
  /** An app's log file moves aside to LOG.1 past this size (default 64 MiB), so output cannot fill the disk. */
  maxLogBytes?: number;
  /** How long start() waits for the shim to report its child. */
  startTimeoutMs?: number;
}

export type { ProcessRecord };

/** `${app}.g${generation}.${type}.${index}`; the parts are checked because the id names files. */
export function processId(spec: Pick<ProcessSpec, "app" | "generation" | "type" | "index">): string {
  if (!APP_PATTERN.test(spec.app)) throw new Error(`invalid app name for a process: ${JSON.stringify(spec.app)}`);
  if (!Number.isInteger(spec.generation) || spec.generation < 0) throw new Error(`invalid generation for a process: ${spec.generation}`);
  if (!TYPE_PATTERN.test(spec.type)) throw new Error(`invalid process type: ${JSON.stringify(spec.type)}`);
  if (!Number.isInteger(spec.index) || spec.index < 1) throw new Error(`invalid process index: ${spec.index}`);
  return `${spec.app}.g${spec.generation}.${spec.type}.${spec.index}`;
}

function toInfo(record: ProcessRecord): ProcessInfo {
  const info: ProcessInfo = {
    id: record.id,
    app: record.app,
    release: record.release,
    generation: record.generation,
    type: record.type,
    index: record.index,
    state: record.state,
    restarts: record.restarts,
    startedAt: record.startedAt,
  };
  if (record.port !== undefined) info.port = record.port;
  if (record.host !== undefined) info.host = record.host;
  if (record.pid !== undefined) info.pid = record.pid;
  return info;
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function byProcessOrder(a: ProcessInfo, b: ProcessInfo): number {
  return a.app.localeCompare(b.app) || a.generation - b.generation || a.type.localeCompare(b.type) || a.index - b.index;
}

/**
 * Runs each app process under its own detached supervisor (runtime/shim.mjs). Shims outlive the deck
 * server; a new ProcessRuntime over the same state dir finds them through their state files.
 */
export class ProcessRuntime implements Runtime {
  readonly stateDir: string;
  readonly #defaultGraceMs: number;
  readonly #maxLogBytes: number | undefined;
  readonly #startTimeoutMs: number;

  readonly #launchOptions: LaunchOptions;

  constructor(options: ProcessRuntimeOptions) {
    this.stateDir = resolve(options.stateDir);
    this.#defaultGraceMs = options.defaultGraceMs ?? 10_000;
    this.#maxLogBytes = options.maxLogBytes;
    this.#startTimeoutMs = options.startTimeoutMs ?? 10_000;
    this.#launchOptions = {
      memoryBytes: options.memoryBytes, cpus: options.cpus, pidsMax: options.pidsMax, cgroupRoot: options.cgroupRoot, sandboxHost: options.sandboxHost,
      hide: (options.hide ?? []).map((dir) => resolve(dir)),
    };
  }

  #paths(id: string) {
    return {
      stateFile: join(this.stateDir, `${id}.json`),
      specFile: join(this.stateDir, `${id}.spec.json`),
      stopFile: join(this.stateDir, `${id}.stop.json`),
      shimLog: join(this.stateDir, `${id}.shim.log`),
    };
  }

  #readRecord(id: string): ProcessRecord | undefined {
    try {
      return JSON.parse(readFileSync(this.#paths(id).stateFile, "utf8")) as ProcessRecord;
    } catch {
      return undefined;
    }
  }

  /** The recorded shim pid is alive and really is that shim: pids get reused. */
  #isShimAlive(record: ProcessRecord): boolean {
    return readCmdline(record.shimPid)?.includes(record.specFile) ?? false;
  }

  #removeFiles(id: string): void {
    for (const path of Object.values(this.#paths(id))) removeFile(path);
  }

  /** A record whose shim is gone: its child (if it somehow survived) runs unsupervised, so it goes too. */
  async #reap(record: ProcessRecord): Promise<void> {
    if (record.pid !== undefined && record.pgid !== undefined && isSameProcess(record.pid, record.childStartTime)) {
      signalGroup(record.pgid, "SIGKILL");
    }
    await this.#removeCgroup(record);
    this.#removeFiles(record.id);
  }

  /** Kills whatever is left in the process's cgroup and removes it. */
  async #removeCgroup(record: ProcessRecord | undefined): Promise<void> {
    for (const dir of record?.cgroupDirs ?? []) await killAndRemoveCgroup(dir);
  }

  /** The full state record of a live process (shim pid, process group, …), for diagnostics. */
  async inspect(id: string): Promise<ProcessRecord | undefined> {
    const record = this.#readRecord(id);
    return record && this.#isShimAlive(record) ? record : undefined;
  }

  async start(spec: ProcessSpec): Promise<ProcessInfo> {
    const id = processId(spec);
    if (!isDirectory(spec.cwd)) {
      throw new DeckError("process_cwd_missing", `cannot start ${id}: directory ${spec.cwd} does not exist`, { id, cwd: spec.cwd });
    }
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    chmodSync(this.stateDir, 0o700);
    const existing = this.#readRecord(id);
    if (existing && this.#isShimAlive(existing)) {
      throw new DeckError("process_exists", `${id} is already running; stop it first`, { id });
    }
    if (existing) await this.#reap(existing);
    this.#removeFiles(id);

    const paths = this.#paths(id);
    const withPort = spec.port !== undefined ? { ...spec.env, PORT: String(spec.port) } : spec.env;
    const launch = await prepareLaunch(cgroupNameFor(this.stateDir, id), { ...spec, env: withPort }, this.#launchOptions);
    const { env: _values, ...withoutEnv } = spec;
    const shimSpec: ShimSpec = {
      version: 2, id, spec: { ...withoutEnv, envKeys: Object.keys(launch.env).sort() }, argv: launch.argv, sandboxed: launch.sandboxed, envOnFd: launch.envOnFd,
      ...(launch.cgroup ? { cgroup: { dirs: [...new Set(Object.values(launch.cgroup.dirs))], oomFile: launch.cgroup.oomFile, memoryBytes: launch.cgroup.limits.memoryBytes } } : {}),
      ...(launch.notice ? { notice: launch.notice } : {}),
      stateFile: paths.stateFile, stopFile: paths.stopFile, graceMs: this.#defaultGraceMs,
      ...(this.#maxLogBytes !== undefined ? { maxLogBytes: this.#maxLogBytes } : {}),
    };
    writeJsonAtomic(paths.specFile, shimSpec);

    // Own session, no pipes to this process but the env's, and a minimal env of its own: the shim must
    // outlive deck, and the app's secrets reach it only through the pipe (never a file).
    const shimLog = openSync(paths.shimLog, "w", 0o600);
    const shim = spawn(process.execPath, [SHIM_PATH, paths.specFile], {
      cwd: this.stateDir,
      detached: true,
      stdio: ["pipe", shimLog, shimLog],
      env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin" },
    });
    closeSync(shimLog);
    // A shim that dies before reading is reported by its exit below, not by an EPIPE here.
    shim.stdin!.on("error", () => undefined);
    shim.stdin!.end(JSON.stringify({ env: launch.env }));
    let shimExit: string | undefined;
    shim.on("exit", (code, signal) => (shimExit = code !== null ? `status ${code}` : `signal ${signal}`));
    shim.on("error", (error) => (shimExit = error.message));
    shim.unref();

    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      const record = this.#readRecord(id);
      if (record && record.shimPid === shim.pid && record.state !== "starting") return toInfo(record);
      if (shimExit !== undefined) {
        const detail = this.#shimLogTail(id);
        this.#removeFiles(id);
        await launch.cgroup?.remove();
        throw new DeckError("process_start_failed", `${id}: its supervisor exited with ${shimExit}${detail ? `: ${detail}` : ""}`, { id });
      }
      if (Date.now() >= deadline) {
        if (shim.pid !== undefined) signalProcess(shim.pid, "SIGKILL");
        if (record?.pgid !== undefined) signalGroup(record.pgid, "SIGKILL");
        this.#removeFiles(id);
        await launch.cgroup?.remove();
        throw new DeckError("process_start_timeout", `${id}: supervisor did not start the process within ${this.#startTimeoutMs / 1000}s`, { id });
      }
      await sleep(POLL_MS);
    }
  }

  #shimLogTail(id: string): string {
    try {
      const lines = readFileSync(this.#paths(id).shimLog, "utf8").trim().split("\n");
      return lines.slice(-3).join(" | ");
    } catch {
      return "";
    }
  }

  async stop(id: string, graceMs: number): Promise<void> {
    const first = this.#readRecord(id);
    if (!first) {
      this.#removeFiles(id);
      return;
    }
    const shimAlive = this.#isShimAlive(first);
    // Without a live shim the group id is only trusted while its leader is provably our child.
    const childAlive = first.pid !== undefined && isSameProcess(first.pid, first.childStartTime);
    let pgid = shimAlive || childAlive ? first.pgid : undefined;
    const startedAt = Date.now();
    if (shimAlive) {
      writeJsonAtomic(this.#paths(id).stopFile, { graceMs });
      signalProcess(first.shimPid, "SIGTERM");
    } else if (pgid !== undefined) {
      signalGroup(pgid, "SIGTERM");
    }

    let groupKilled = false;
    let shimKilled = false;
    for (;;) {
      // The shim may have restarted the child just before the SIGTERM: follow its latest group.
      const latest = this.#readRecord(id);
      if (shimAlive && latest?.shimPid === first.shimPid && latest.pgid !== undefined) pgid = latest.pgid;
      const shimGone = !this.#isShimAlive(first);
      const groupGone = pgid === undefined || !isGroupAlive(pgid);
      if (shimGone && groupGone) break;
      const elapsed = Date.now() - startedAt;
      if (!shimAlive && !groupKilled && elapsed >= graceMs && pgid !== undefined) {
        signalGroup(pgid, "SIGKILL");
        groupKilled = true;
      }
      if (!shimKilled && elapsed >= graceMs + STOP_MARGIN_MS) {
        if (!shimGone) signalProcess(first.shimPid, "SIGKILL");
        if (pgid !== undefined) signalGroup(pgid, "SIGKILL");
        shimKilled = true;
      }
      if (elapsed >= graceMs + STOP_MARGIN_MS + 10_000) {
        throw new Error(`${id}: processes still alive after SIGKILL (shim ${first.shimPid}, group ${pgid})`);
      }
      await sleep(POLL_MS);
    }
    await this.#removeCgroup(first);
    this.#removeFiles(id);
  }

  /** Live processes (of one app, or all), from the state files; records of dead shims are cleaned up. */
  async list(app?: string): Promise<ProcessInfo[]> {
    if (!existsSync(this.stateDir)) return [];
    const out: ProcessInfo[] = [];
    for (const entry of readdirSync(this.stateDir)) {
      const match = STATE_FILE.exec(entry);
      if (!match || entry.endsWith(".spec.json") || entry.endsWith(".stop.json")) continue;
      const record = this.#readRecord(match[1]);
      if (!record || (app !== undefined && record.app !== app)) continue;
      if (this.#isShimAlive(record)) out.push(toInfo(record));
      else await this.#reap(record);
    }
    return out.sort(byProcessOrder);
  }

  async stats(ids?: readonly string[]): Promise<ProcessStats[]> {
    const out: ProcessStats[] = [];
    for (const p of await this.list()) {
      if (ids && !ids.includes(p.id)) continue;
      const record = this.#readRecord(p.id);
      if (!record) continue;
      out.push({ id: p.id, ...(await readProcessUsage(record.cgroupDirs ?? [], record.pid)) });
    }
    return out;
  }

  /**
   * Called when deck starts: the processes a previous deck run left behind, still supervised by their
   * shims, become this runtime's; leftovers of dead shims are cleaned up.
   */
  async adopt(): Promise<ProcessInfo[]> {
    return this.list();
  }

  /** Stops every process (of one app, or all) in parallel. */
  async stopAll(graceMs: number, app?: string): Promise<void> {
    const processes = await this.list(app);
    await Promise.all(processes.map((p) => this.stop(p.id, graceMs)));
  }

  runOnce(spec: RunOnceSpec): Promise<RunOnceResult> {
    return runOnce(spec, this.#launchOptions);
  }
}
