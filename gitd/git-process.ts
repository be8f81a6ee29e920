import { spawn, type ChildProcess } from "node:child_process";

export type GitService = "receive-pack" | "upload-pack";

export interface GitServiceOptions {
  /** The smart HTTP mode. */
  statelessRpc?: boolean;
  advertiseRefs?: boolean;
  /** receive-pack: the largest pack git accepts (0 or unset = no limit); a larger one leaves the repository unchanged. */
  maxPackBytes?: number;
}

/** argv for the real git server programs. */
export function gitServiceArgv(service: GitService, repoDir: string, opts: GitServiceOptions = {}): string[] {
  const argv = ["git"];
  if (service === "receive-pack" && opts.maxPackBytes) argv.push("-c", `receive.maxInputSize=${opts.maxPackBytes}`);
  argv.push(service);
  if (opts.statelessRpc) argv.push("--stateless-rpc");
  if (opts.advertiseRefs) argv.push("--advertise-refs");
  argv.push(repoDir);
  return argv;
}

export function spawnGit(argv: string[], env: Record<string, string>): ChildProcess {
  const [cmd, ...args] = argv;
  return spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
}

/** How long git gets to wind down after its client went away before it is stopped by a signal. */
const ABANDON_GRACE_MS = 30_000;

/**
 * The client of a git program went away. git is told by the end of its input, not by a signal: a
 * receive-pack killed by a signal leaves its quarantine directory in the repository, while one whose
 * input ends (or whose pre-receive hook refuses) removes it. Its output is drained so it never
 * blocks on a full pipe; a git that is still running after the grace period is stopped.
 */
export function abandonGit(child: ChildProcess): void {
  child.stdin?.destroy();
  for (const out of [child.stdout, child.stderr]) {
    out?.unpipe();
    out?.resume();
  }
  if (child.exitCode !== null || child.signalCode !== null) return;
  const timer = setTimeout(() => child.kill("SIGTERM"), ABANDON_GRACE_MS);
  timer.unref();
  child.once("exit", () => clearTimeout(timer));
}

/** Parses `git-receive-pack '/app.git'` as sent by an ssh client; null when it is not a git command. */
export function parseGitCommand(command: string): { service: GitService; path: string } | null {
  const m = /^git[ -](receive-pack|upload-pack)\s+(.+)$/s.exec(command.trim());
  if (!m) return null;
  let path = m[2].trim();
  if ((path.startsWith("'") && path.endsWith("'")) || (path.startsWith('"') && path.endsWith('"'))) path = path.slice(1, -1);
  return { service: m[1] as GitService, path };
}
