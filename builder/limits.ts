import { AsyncLocalStorage } from "node:async_hooks";
import { accessSync, constants } from "node:fs";
import { delimiter, isAbsolute, resolve } from "node:path";
import type { BuildResult } from "../core/index.ts";
import {
  cgroupEnterArgv, cpuQuotaUs, createCgroup, CGROUP_ENTER_FAILED, DEFAULT_PIDS_MAX,
  type Cgroup, type CgroupLimits, type CgroupOptions, type CgroupResult,
} from "../runtime/cgroups.ts";

/**
 * Memory, CPU and process-count limits for builds: one cgroup per build (runtime/cgroups.ts, v1 or
 * v2), `deck/<name>`. A runaway build (a memory leak in a bundler, a fork loop) is stopped inside its
 * own cgroup instead of starving the apps deck runs on the same machine.
 *
 * Every child the builder spawns while a build runs enters the build's cgroup before it execs (see
 * `cgroupEnterArgv`), so nothing it forks ever runs outside the limits, and removing the cgroup kills
 * whatever escaped the build's process group (a daemonised helper, a `setsid` child).
 */
export type BuildLimits = CgroupLimits;
export type BuildCgroup = Cgroup;
export { cgroupEnterArgv, cpuQuotaUs, CGROUP_ENTER_FAILED, DEFAULT_PIDS_MAX, type CgroupResult, type CgroupOptions };

/**
 * Creates the build cgroup `name` with `limits`. Returns the reason instead when this machine does not
 * allow it (no cgroups, not root, a read-only /sys/fs/cgroup), so the caller can build without limits.
 */
export function createBuildCgroup(name: string, limits: BuildLimits, opts: CgroupOptions = {}): Promise<CgroupResult> {
  return createCgroup(name, limits, opts);
}

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

let warnedNoCgroups = false;

/**
 * Runs a build inside a cgroup of its own named `name` with `limits`, and removes the cgroup after,
 * killing anything the build left behind. A build stopped by the memory limit is reported as such
 * rather than as the failed command it was in the middle of. Where this machine does not let deck
 * create cgroups the build runs without limits, said once in `log`.
 */
export async function buildInCgroup(
  name: string, limits: BuildLimits, log: (line: string) => void, build: () => Promise<BuildResult>,
): Promise<{ result: BuildResult; outOfMemory: boolean }> {
  const r = await createBuildCgroup(name, limits);
  if (!r.ok && !warnedNoCgroups) {
    warnedNoCgroups = true;
    log(`builds run without memory/CPU limits: cannot create a cgroup v1 under /sys/fs/cgroup (${r.reason})`);
  }
  const cgroup = r.ok ? r.cgroup : null;
  try {
    const result = await runInCgroup(cgroup, build);
    if (!result.ok && result.code !== "cancelled" && result.code !== "timeout" && cgroup && (await cgroup.outOfMemory())) {
      return { result: { ...result, code: "build_failed", message: describeOutOfMemory(cgroup.limits) }, outOfMemory: true };
    }
    return { result, outOfMemory: false };
  } finally {
    await cgroup?.remove().catch((e: Error) => log(`removing the cgroup ${name}: ${e.message}`));
  }
}
