import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ProcessStats } from "../core/index.ts";

/**
 * CPU time and memory of a process of the process runtime, read from its cgroup (all it forked is
 * counted, exactly: every app runs in a cgroup of its own under its own uid), or from /proc for the
 * process alone when it has no cgroup. cgroup v1 and v2.
 */

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

function statField(text: string | undefined, key: string): number | undefined {
  if (text === undefined) return undefined;
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Linux's USER_HZ, the unit of /proc/PID/stat times, is 100 on every architecture deck runs on. */
const CLOCK_TICKS = 100;

/** What the cgroup directories (one per controller in v1, one in v2) or, failing that, /proc/PID say. */
export async function readProcessUsage(dirs: readonly string[], pid?: number): Promise<Omit<ProcessStats, "id">> {
  let cpuSeconds: number | null = null;
  let rssBytes: number | null = null;
  let memoryLimitBytes: number | null = null;
  for (const dir of dirs) {
    const usage = await readText(join(dir, "cpuacct.usage"));
    if (usage !== undefined && cpuSeconds === null) cpuSeconds = Number(usage.trim()) / 1e9;
    const cpuStat = statField(await readText(join(dir, "cpu.stat")), "usage_usec");
    if (cpuStat !== undefined && cpuSeconds === null) cpuSeconds = cpuStat / 1e6;
    const memoryStat = await readText(join(dir, "memory.stat"));
    // v1: total_rss (the cgroup and its children); v2: anon. Page cache is not the app's memory.
    const rss = statField(memoryStat, "total_rss") ?? statField(memoryStat, "anon");
    if (rss !== undefined && rssBytes === null) rssBytes = rss;
    const limit = (await readText(join(dir, "memory.limit_in_bytes"))) ?? (await readText(join(dir, "memory.max")));
    if (limit !== undefined && memoryLimitBytes === null && /^\d+$/.test(limit.trim())) {
      const n = Number(limit.trim());
      // v1 says "no limit" with a number near 2^63.
      if (n < 2 ** 60) memoryLimitBytes = n;
    }
  }
  // No CPU accounting of its own (cgroup v1 with cpuacct mounted apart): the CPU time of every process
  // in its cgroup, with that of the children they reaped; the process alone without a cgroup.
  let pids: number[] = [];
  for (const dir of dirs) {
    const procs = await readText(join(dir, "cgroup.procs"));
    if (procs !== undefined) {
      pids = procs.split("\n").filter(Boolean).map(Number);
      break;
    }
  }
  if (pids.length === 0 && pid !== undefined) pids = [pid];
  if (cpuSeconds === null && pids.length > 0) {
    let ticks = 0;
    let seen = false;
    for (const p of pids) {
      const stat = await readText(`/proc/${p}/stat`);
      const fields = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (!fields) continue;
      seen = true;
      // utime, stime, cutime, cstime
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    }
    if (seen) cpuSeconds = ticks / CLOCK_TICKS;
  }
  if (rssBytes === null && pid !== undefined) {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec((await readText(`/proc/${pid}/status`)) ?? "");
    if (kb) rssBytes = Number(kb[1]) * 1024;
  }
  return { cpuSeconds, rssBytes, memoryLimitBytes };
}
