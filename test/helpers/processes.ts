/**
 * Finding a test's processes on the host. Builds and app processes run in their own pid namespace, so
 * a pid they print means nothing outside: tests find them by a word in their arguments instead.
 */
import type { ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** The host pid of the process that has `word` as one of its arguments, or 0 when none has. */
export function pidWithArgument(word: string): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(word)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return 0;
}

/** Stops a child the test started: SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopChild(child: ChildProcess | null, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode) return;
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  if (child.exitCode === null && !child.signalCode) {
    child.kill("SIGKILL");
    await exited;
  }
}
