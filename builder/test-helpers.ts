/** Helpers for the builder's tests: real bare repositories and a look at the process table. */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const GIT_IDENTITY = ["-c", "user.name=Deck Test", "-c", "user.email=test@deck.invalid", "-c", "init.defaultBranch=main"];

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", [...GIT_IDENTITY, ...args], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

export interface TestRepo {
  /** The bare repository a push landed in. */
  repoDir: string;
  /** Work tree the commit was made in. */
  workDir: string;
  sha: string;
}

export interface PushedRepoOptions {
  /** Paths among `files` committed as executables. */
  executable?: string[];
  /** Paths committed as symbolic links, to their target. */
  links?: Record<string, string>;
}

/** Writes `files` into a fresh work tree under `root`, commits them and pushes to a new bare repo. */
export function createPushedRepo(root: string, files: Record<string, string>, options: PushedRepoOptions = {}): TestRepo {
  const repoDir = join(root, "repo.git");
  const workDir = join(root, "work");
  mkdirSync(workDir, { recursive: true });
  git(root, "init", "--bare", "-q", repoDir);
  git(workDir, "init", "-q");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(workDir, path)), { recursive: true });
    writeFileSync(join(workDir, path), content);
  }
  for (const path of options.executable ?? []) chmodSync(join(workDir, path), 0o755);
  for (const [path, target] of Object.entries(options.links ?? {})) {
    mkdirSync(dirname(join(workDir, path)), { recursive: true });
    symlinkSync(target, join(workDir, path));
  }
  git(workDir, "add", "-A");
  git(workDir, "commit", "-q", "-m", "deploy me");
  git(workDir, "push", "-q", repoDir, "HEAD:refs/heads/main");
  return { repoDir, workDir, sha: git(workDir, "rev-parse", "HEAD") };
}

/** Pids of live processes whose argv is exactly `argv`. */
export function findProcesses(argv: string[]): number[] {
  const wanted = argv.join("\0");
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0$/, "");
      const state = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ").pop()?.[0];
      if (cmdline === wanted && state !== "Z") pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/** A sleep duration of about 60 s that no other test uses, so its process can be found by argv. */
export function uniqueSleepSeconds(): string {
  return `60.${String(Math.floor(Math.random() * 1e6)).padStart(6, "0")}`;
}
