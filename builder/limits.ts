import { AsyncLocalStorage } from "node:async_hooks";
import { accessSync, constants } from "node:fs";
import { mkdir, readFile, rmdir, stat, writeFile } from "node:fs/promises";
import { delimiter, isAbsolute, join, resolve } from "node:path";

/**
 * Memory, CPU and process-count limits for builds, with cgroup v1: one cgroup per build under
 * `/sys/fs/cgroup/{memory,cpu,pids}/deck/<name>`. A runaway build (a memory leak in a bundler, a fork
 * loop) is stopped inside its own cgroup instead of starving the apps deck runs on the same machine.
 *
 * Every child the builder spawns while a build runs enters the build's cgroup before it execs (see
 * `cgroupEnterArgv`), so nothing it forks ever runs outside the limits, and removing the cgroup kills
 * whatever escaped the build's process group (a daemonised helper, a `setsid` child).
 */
export interface BuildLimits {
  memoryBytes: number;
  /** CPU time per wall-clock time: 1 = one core, 0.5 = half of one. */
  cpus: number;
  /** Processes and threads the build may have at once. */
  pidsMax?: number;
}

/** npm and cargo run many threads; a fork bomb needs far more than this. */
export const DEFAULT_PIDS_MAX = 4096;
const CFS_PERIOD_US = 100_000;
const CONTROLLERS = ["memory", "cpu", "pids"] as const;
type Controller = (typeof CONTROLLERS)[number];

export interface BuildCgroup {
  readonly name: string;
  readonly limits: BuildLimits;
  /** One directory per controller. */
  readonly dirs: Readonly<Record<Controller, string>>;
  /** The `cgroup.procs` files a child writes its pid to, to enter the cgroup. */
  readonly procsFiles: readonly string[];
  /** True when the kernel killed a process of this build for going over its memory limit. */
  outOfMemory(): Promise<boolean>;
  /** Kills every process left in the cgroup, then removes it. Safe to call twice. */
  remove(): Promise<void>;
}

export type CgroupResult = { ok: true; cgroup: BuildCgroup } | { ok: false; reason: string };

export interface CgroupOptions {
  /** The cgroup v1 mount point; tests may point elsewhere. */
  root?: string;
  /** Parent cgroup under each controller. */
  parent?: string;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;

/**
 * Creates the cgroup `name` with `limits`. Returns the reason instead when this machine does not allow
 * it (no cgroup v1, not root, a read-only /sys/fs/cgroup), so the caller can build without limits.
 */
export async function createBuildCgroup(name: string, limits: BuildLimits, opts: CgroupOptions = {}): Promise<CgroupResult> {
  if (!NAME.test(name)) throw new Error(`createBuildCgroup: bad cgroup name ${JSON.stringify(name)}`);
  const root = opts.root ?? "/sys/fs/cgroup";
  const parent = opts.parent ?? "deck";
  const dirs = Object.fromEntries(CONTROLLERS.map((c) => [c, join(root, c, parent, name)])) as Record<Controller, string>;
  const created: string[] = [];
  const cgroup = makeCgroup(name, limits, dirs, created);
  try {
    for (const c of CONTROLLERS) {
      // A leftover of the same name (a server that crashed mid-build) is emptied and replaced.
      await killAndRemove(dirs[c]);
      await mkdir(dirs[c], { recursive: true });
      created.push(dirs[c]);
    }
    await writeLimits(dirs, limits);
    return { ok: true, cgroup };
  } catch (e) {
    await cgroup.remove().catch(() => undefined);
    const err = e as NodeJS.ErrnoException;
    return { ok: false, reason: `${err.code ?? "error"} on ${err.path ?? root}: ${err.message.split("\n")[0]}` };
  }
}

async function writeLimits(dirs: Record<Controller, string>, limits: BuildLimits): Promise<void> {
  const bytes = String(Math.floor(limits.memoryBytes));
  await writeFile(join(dirs.memory, "memory.limit_in_bytes"), bytes);
  // Without swap accounting a build could page its excess out to swap instead of being stopped.
  const memsw = join(dirs.memory, "memory.memsw.limit_in_bytes");
  if (await exists(memsw)) await writeFile(memsw, bytes);
  await writeFile(join(dirs.cpu, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
  await writeFile(join(dirs.cpu, "cpu.cfs_quota_us"), String(cpuQuotaUs(limits.cpus)));
  await writeFile(join(dirs.pids, "pids.max"), String(limits.pidsMax ?? DEFAULT_PIDS_MAX));
}

/** CFS quota for `cpus` cores per 100 ms period (the kernel's minimum quota is 1 ms). */
export function cpuQuotaUs(cpus: number): number {
  return Math.max(1000, Math.round(cpus * CFS_PERIOD_US));
}

function makeCgroup(name: string, limits: BuildLimits, dirs: Record<Controller, string>, created: string[]): BuildCgroup {
  let removing: Promise<void> | undefined;
  return {
    name,
    limits,
    dirs,
    procsFiles: CONTROLLERS.map((c) => join(dirs[c], "cgroup.procs")),
    async outOfMemory() {
      const control = await readFile(join(dirs.memory, "memory.oom_control"), "utf8").catch(() => "");
      const kills = /^oom_kill (\d+)$/m.exec(control);
      if (kills) return Number(kills[1]) > 0;
      // Kernels before 4.13 do not count kills: hitting the limit is the closest sign.
      const failcnt = await readFile(join(dirs.memory, "memory.failcnt"), "utf8").catch(() => "0");
      return Number(failcnt.trim()) > 0;
    },
    remove() {
      removing ??= (async () => {
        for (const dir of [...created].reverse()) await killAndRemove(dir);
      })();
      return removing;
    },
  };
}

/** SIGKILLs every process in a cgroup directory until it is empty, then removes it. */
async function killAndRemove(dir: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const pids = await readPids(join(dir, "cgroup.procs"));
    if (pids === null) return; // no such cgroup
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    try {
      await rmdir(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      // EBUSY: killed processes are still exiting (or are zombies not yet reaped by their parent).
      if (code !== "EBUSY" || Date.now() > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readPids(file: string): Promise<number[] | null> {
  try {
    return (await readFile(file, "utf8")).split("\n").filter(Boolean).map(Number);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `argv`, run so that the process enters the cgroups first: a tiny `sh` writes its own pid into each
 * `cgroup.procs` and then execs the command in place (same pid, same process group). Writing the pid
 * from outside after spawn would leave a moment in which the child could fork outside the limits.
 * `argv[0]` must be an absolute path (see `resolveExecutable`), so exec cannot fail to find it.
 */
export function cgroupEnterArgv(procsFiles: readonly string[], argv: readonly string[]): string[] {
  const script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
  return ["/bin/sh", "-c", script, "deck-build-cgroup", ...procsFiles, "--", ...argv];
}

/** Exit status of the `cgroupEnterArgv` wrapper when it could not enter a cgroup. */
export const CGROUP_ENTER_FAILED = 125;

/** `command` as an absolute path, looked up on PATH like execvp does; null when nothing runnable is found. */
export function resolveExecutable(command: string, path: string | undefined, cwd: string): string | null {
  const runnable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes("/")) {
    const p = isAbsolute(command) ? command : resolve(cwd, command);
    return runnable(p) ? p : null;
  }
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    const p = resolve(cwd, dir || ".", command);
    if (runnable(p)) return p;
  }
  return null;
}

const current = new AsyncLocalStorage<BuildCgroup | null>();

/**
 * Runs `work` with every builder child it spawns (checkout, each buildpack's commands, from any
 * buildpack) placed in `cgroup`. Carried in async context so that buildpacks need not pass it along.
 */
export function runInCgroup<T>(cgroup: BuildCgroup | null, work: () => Promise<T>): Promise<T> {
  return current.run(cgroup, work);
}

/** The cgroup of the build the caller is part of, if any. */
export function currentBuildCgroup(): BuildCgroup | null {
  return current.getStore() ?? null;
}

/** `256 MB`, `1.5 GB`: how a limit is shown to users. */
export function formatBytes(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  if (mb >= 1024) {
    const gb = mb / 1024;
    return `${Number.isInteger(gb) ? gb : gb.toFixed(1)} GB`;
  }
  return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
}

export function describeOutOfMemory(limits: BuildLimits): string {
  return `build ran out of memory (limit ${formatBytes(limits.memoryBytes)}); raise DECK_BUILD_MEMORY or reduce the build's memory use`;
}
