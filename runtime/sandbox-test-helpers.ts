/** Helpers for tests that run real sandboxed processes. */
import { readdirSync, readFileSync } from "node:fs";
import type { SandboxIdentity } from "../core/interfaces.ts";
import { loadSandboxHost, type SandboxHost } from "./sandbox.ts";

/** Uids in use by a live process (the real uid, first field of `Uid:`). */
function liveUids(): Set<number> {
  const uids = new Set<number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"));
      if (m) uids.add(Number(m[1]));
    } catch {
      // exited while we looked
    }
  }
  return uids;
}

/**
 * A uid/gid no process and no passwd entry uses, far above the ranges deck allocates, so that tests
 * running at the same time never share one (uids need no passwd entry to be used).
 */
export function freeTestIdentity(): SandboxIdentity {
  const passwd = readFileSync("/etc/passwd", "utf8");
  const used = liveUids();
  for (;;) {
    const uid = 3_000_000 + Math.floor(Math.random() * 1_000_000);
    if (!used.has(uid) && !new RegExp(`^[^:]*:[^:]*:${uid}:`, "m").test(passwd)) return { uid, gid: uid };
  }
}

/**
 * The host's sandbox, or why sandboxed tests cannot run here: skip with the reason outside CI; with
 * CI=true a missing bwrap or setpriv is an error, not a skip.
 */
export async function sandboxHostOrSkip(): Promise<{ host: SandboxHost; skip: false } | { host: SandboxHost; skip: string }> {
  const host = await loadSandboxHost();
  const reason = !host.setpriv ? "setpriv not found (apt-get install util-linux)" : !host.bwrap ? `${host.bwrapOff} (apt-get install bubblewrap; run as root)` : undefined;
  if (reason === undefined && process.getuid?.() === 0) return { host, skip: false };
  const why = reason ?? "sandboxed processes need root";
  if (process.env.CI === "true") throw new Error(`${why} (required when CI=true)`);
  return { host, skip: why };
}
