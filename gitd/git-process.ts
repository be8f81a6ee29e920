import { spawn, type ChildProcess } from "node:child_process";

export type GitService = "receive-pack" | "upload-pack";

/** argv for the real git server programs; `statelessRpc` is the smart HTTP mode. */
export function gitServiceArgv(service: GitService, repoDir: string, opts: { statelessRpc?: boolean; advertiseRefs?: boolean } = {}): string[] {
  const argv = ["git", service];
  if (opts.statelessRpc) argv.push("--stateless-rpc");
  if (opts.advertiseRefs) argv.push("--advertise-refs");
  argv.push(repoDir);
  return argv;
}

export function spawnGit(argv: string[], env: Record<string, string>): ChildProcess {
  const [cmd, ...args] = argv;
  return spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
}

/** Parses `git-receive-pack '/app.git'` as sent by an ssh client; null when it is not a git command. */
export function parseGitCommand(command: string): { service: GitService; path: string } | null {
  const m = /^git[ -](receive-pack|upload-pack)\s+(.+)$/s.exec(command.trim());
  if (!m) return null;
  let path = m[2].trim();
  if ((path.startsWith("'") && path.endsWith("'")) || (path.startsWith('"') && path.endsWith('"'))) path = path.slice(1, -1);
  return { service: m[1] as GitService, path };
}
