import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { killAndRemoveCgroup } from "./shim-lib.mjs";

/**
 * Memory, CPU and process-count limits with cgroups, for builds and app processes alike, on both
 * kernel interfaces:
 * - v1: one directory per controller, `/sys/fs/cgroup/{memory,cpu,pids}/<parent>/<name>`;
 * - v2 (the unified hierarchy): one directory, `/sys/fs/cgroup/<parent>/<name>`, whose ancestors
 *   hand the controllers down through `cgroup.subtree_control`.
 * A process enters the cgroup before it execs (see `cgroupEnterArgv`), so nothing it forks ever runs
 * outside the limits, and removing the cgroup kills whatever escaped its process group.
 */
export interface CgroupLimits {
  memoryBytes: number;
  /** CPU time per wall-clock time: 1 = one core, 0.5 = half of one. */
  cpus: number;
  /** Processes and threads the group may have at once. */
  pidsMax?: number;
}

export type CgroupVersion = "v1" | "v2";
export const CGROUP_CONTROLLERS = ["memory", "cpu", "pids"] as const;
export type CgroupController = (typeof CGROUP_CONTROLLERS)[number];

/** npm and cargo run many threads; a fork bomb needs far more than this. */
export const DEFAULT_PIDS_MAX = 4096;
const CFS_PERIOD_US = 100_000;
const DEFAULT_ROOT = "/sys/fs/cgroup";

export interface Cgroup {
  readonly name: string;
  readonly version: CgroupVersion;
  readonly limits: CgroupLimits;
  /** The directory of each controller; on v2 all three are the same directory. */
  readonly dirs: Readonly<Record<CgroupController, string>>;
  /** The `cgroup.procs` files a process writes its pid to, to enter the cgroup. */
  readonly procsFiles: readonly string[];
  /** The file whose `oom_kill N` line counts the kernel's out-of-memory kills in this cgroup. */
  readonly oomFile: string;
  /** True when the kernel killed a process of this cgroup for going over its memory limit. */
  outOfMemory(): Promise<boolean>;
  /** Kills every process left in the cgroup, then removes it. Safe to call twice. */
  remove(): Promise<void>;
}

export type CgroupResult = { ok: true; cgroup: Cgroup } | { ok: false; reason: string };

export interface CgroupOptions {
  /** The cgroup mount point (default /sys/fs/cgroup); tests point it at a directory laid out like one. */
  root?: string;
  /** Which interface `root` speaks; detected from `root` when unset. */
  version?: CgroupVersion;
  /** Parent cgroup, e.g. "deck" or "deck/apps". */
  parent?: string;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;
const PARENT = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*(\/[a-zA-Z0-9][a-zA-Z0-9_.-]*)*$/;

/**
 * v2 when `root` is the unified hierarchy itself (it then has `cgroup.controllers`); v1 otherwise. A
 * hybrid host (v1 controllers, an empty cgroup2 at /sys/fs/cgroup/unified) is v1.
 */
export async function detectCgroupVersion(root = DEFAULT_ROOT): Promise<CgroupVersion> {
  try {
    await access(join(root, "cgroup.controllers"));
    return "v2";
  } catch {
    return "v1";
  }
}

/**
 * Creates the cgroup `parent/name` with `limits`. Returns the reason instead when this machine does
 * not allow it (no cgroups, not root, a controller missing, a read-only /sys/fs/cgroup).
 */
export async function createCgroup(name: string, limits: CgroupLimits, opts: CgroupOptions = {}): Promise<CgroupResult> {
  if (!NAME.test(name)) throw new Error(`createCgroup: bad cgroup name ${JSON.stringify(name)}`);
  const parent = opts.parent ?? "deck";
  if (!PARENT.test(parent)) throw new Error(`createCgroup: bad parent cgroup ${JSON.stringify(parent)}`);
  const root = opts.root ?? DEFAULT_ROOT;
  const version = opts.version ?? (await detectCgroupVersion(root));
  const dirs = cgroupDirs(version, root, parent, name);
  const unique = [...new Set(Object.values(dirs))];
  const created: string[] = [];
  const cgroup = makeCgroup({ name, version, limits, dirs, created });
  try {
    if (version === "v2") await enableControllers(root, parent);
    for (const dir of unique) {
      // A leftover of the same name (a server that crashed while it ran) is emptied and replaced.
      await killAndRemoveCgroup(dir);
      await mkdir(dir, { recursive: true });
      created.push(dir);
    }
    await writeLimits(version, dirs, limits);
    return { ok: true, cgroup };
  } catch (e) {
    // Best effort: the failure that matters is the one returned below, and a directory left behind
    // is emptied and replaced by the next cgroup of this name.
    await cgroup.remove().catch(() => undefined);
    const err = e as NodeJS.ErrnoException;
    return { ok: false, reason: `cgroup ${version}: ${err.code ?? "error"} on ${err.path ?? root}: ${err.message.split("\n")[0]}` };
  }
}

export function cgroupDirs(version: CgroupVersion, root: string, parent: string, name: string): Record<CgroupController, string> {
  if (version === "v2") {
    const dir = join(root, parent, name);
    return { memory: dir, cpu: dir, pids: dir };
  }
  return { memory: join(root, "memory", parent, name), cpu: join(root, "cpu", parent, name), pids: join(root, "pids", parent, name) };
}

/** v2 hands a controller to a child only when every ancestor lists it in `cgroup.subtree_control`. */
async function enableControllers(root: string, parent: string): Promise<void> {
  let dir = root;
  const levels = [root, ...parent.split("/").map((part) => (dir = join(dir, part)))];
  for (const level of levels) {
    await mkdir(level, { recursive: true });
    for (const c of CGROUP_CONTROLLERS) await writeFile(join(level, "cgroup.subtree_control"), `+${c}`);
  }
}

async function writeLimits(version: CgroupVersion, dirs: Record<CgroupController, string>, limits: CgroupLimits): Promise<void> {
  const bytes = String(Math.floor(limits.memoryBytes));
  const pids = String(limits.pidsMax ?? DEFAULT_PIDS_MAX);
  if (version === "v2") {
    await writeFile(join(dirs.memory, "memory.max"), bytes);
    // Without this the group could page its excess out to swap instead of being stopped.
    const swap = join(dirs.memory, "memory.swap.max");
    if (await exists(swap)) await writeFile(swap, "0");
    await writeFile(join(dirs.cpu, "cpu.max"), `${cpuQuotaUs(limits.cpus)} ${CFS_PERIOD_US}`);
    await writeFile(join(dirs.pids, "pids.max"), pids);
    return;
  }
  await writeFile(join(dirs.memory, "memory.limit_in_bytes"), bytes);
  const memsw = join(dirs.memory, "memory.memsw.limit_in_bytes");
  if (await exists(memsw)) await writeFile(memsw, bytes);
  await writeFile(join(dirs.cpu, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
  await writeFile(join(dirs.cpu, "cpu.cfs_quota_us"), String(cpuQuotaUs(limits.cpus)));
  await writeFile(join(dirs.pids, "pids.max"), pids);
}

/** CFS quota for `cpus` cores per 100 ms period (the kernel's minimum quota is 1 ms). */
export function cpuQuotaUs(cpus: number): number {
  return Math.max(1000, Math.round(cpus * CFS_PERIOD_US));
}

interface CgroupParts {
  name: string;
  version: CgroupVersion;
  limits: CgroupLimits;
  dirs: Record<CgroupController, string>;
  created: string[];
}

function makeCgroup({ name, version, limits, dirs, created }: CgroupParts): Cgroup {
  let removing: Promise<void> | undefined;
  const oomFile = join(dirs.memory, version === "v2" ? "memory.events" : "memory.oom_control");
  return {
    name,
    version,
    limits,
    dirs,
    procsFiles: [...new Set(Object.values(dirs))].map((d) => join(d, "cgroup.procs")),
    oomFile,
    async outOfMemory() {
      // No file (the cgroup is gone, or the kernel does not keep one): no kill is known of.
      const kills = /^oom_kill (\d+)$/m.exec(await readFile(oomFile, "utf8").catch(() => ""));
      if (kills) return Number(kills[1]) > 0;
      if (version === "v2") return false;
      // v1 kernels before 4.13 do not count kills: hitting the limit is the closest sign (no file: not hit).
      const failcnt = await readFile(join(dirs.memory, "memory.failcnt"), "utf8").catch(() => "0");
      return Number(failcnt.trim()) > 0;
    },
    remove() {
      removing ??= (async () => {
        for (const dir of [...created].reverse()) await killAndRemoveCgroup(dir);
      })();
      return removing;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `argv`, run so that the process enters the cgroups first: a tiny `sh` writes its own pid into each
 * `cgroup.procs` and then execs the command in place (same pid, same process group). Writing the pid
 * from outside after spawn would leave a moment in which the child could fork outside the limits.
 * `argv[0]` must be an absolute path, so exec cannot fail to find it.
 */
export function cgroupEnterArgv(procsFiles: readonly string[], argv: readonly string[]): string[] {
  const script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
  return ["/bin/sh", "-c", script, "deck-build-cgroup", ...procsFiles, "--", ...argv];
}

/** Exit status of the `cgroupEnterArgv` wrapper when it could not enter a cgroup. */
export const CGROUP_ENTER_FAILED = 125;

export interface ControllerProbe {
  controller: CgroupController;
  version: CgroupVersion;
  ok: boolean;
  /** Why the controller cannot be used, when it cannot. */
  reason?: string;
}

const PROBE_FILE: Record<CgroupVersion, Record<CgroupController, [string, string]>> = {
  v1: { memory: ["memory.limit_in_bytes", String(64 * 1024 * 1024)], cpu: ["cpu.cfs_quota_us", "100000"], pids: ["pids.max", "64"] },
  v2: { memory: ["memory.max", String(64 * 1024 * 1024)], cpu: ["cpu.max", "100000 100000"], pids: ["pids.max", "64"] },
};

/** Whether deck can set each limit on this host: a throwaway cgroup per controller, written to and removed. */
export async function probeCgroupControllers(opts: Pick<CgroupOptions, "root" | "version"> = {}): Promise<ControllerProbe[]> {
  const root = opts.root ?? DEFAULT_ROOT;
  const version = opts.version ?? (await detectCgroupVersion(root));
  // Without the file no controller is offered, and each one is reported below as not offered.
  const offered = version === "v2" ? (await readFile(join(root, "cgroup.controllers"), "utf8").catch(() => "")).trim().split(/\s+/) : [];
  const out: ControllerProbe[] = [];
  for (const controller of CGROUP_CONTROLLERS) {
    if (version === "v2" && !offered.includes(controller)) {
      out.push({ controller, version, ok: false, reason: `the kernel offers no ${controller} controller in ${join(root, "cgroup.controllers")}` });
      continue;
    }
    const parent = version === "v2" ? join(root, "deck") : join(root, controller, "deck");
    const dir = join(parent, `probe-${process.pid}-${controller}`);
    try {
      if (version === "v2") {
        await mkdir(parent, { recursive: true });
        for (const level of [root, parent]) await writeFile(join(level, "cgroup.subtree_control"), `+${controller}`);
      }
      await mkdir(dir, { recursive: true });
      const [file, value] = PROBE_FILE[version][controller];
      await writeFile(join(dir, file), value);
      await killAndRemoveCgroup(dir);
      out.push({ controller, version, ok: true });
    } catch (e) {
      // Best effort: the probe's own failure is what is reported; an empty probe directory may stay.
      await killAndRemoveCgroup(dir).catch(() => undefined);
      const err = e as NodeJS.ErrnoException;
      out.push({ controller, version, ok: false, reason: `${err.code ?? "error"} on ${err.path ?? dir}` });
    }
  }
  return out;
}
