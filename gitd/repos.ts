import { spawnSync } from "node:child_process";
import { chmod, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Paths } from "../deploy/index.ts";

const HOOK_CLIENT = fileURLToPath(new URL("./hook-client.cjs", import.meta.url));

/** The pre-receive hook deck installs: a two-line script that execs the hook client. */
export function hookScript(nodePath: string, socketPath: string): string {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  return `#!/bin/sh\n# Installed by deck: hands this push to the deck server, which builds and deploys it.\nexec ${quote(nodePath)} ${quote(HOOK_CLIENT)} ${quote(socketPath)}\n`;
}

export function initRepoArgv(dir: string): string[] {
  return ["git", "init", "--quiet", "--bare", "--initial-branch=main", dir];
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

export async function installHook(repoDir: string, paths: Paths): Promise<void> {
  const hook = join(repoDir, "hooks", "pre-receive");
  await mkdir(join(repoDir, "hooks"), { recursive: true });
  await writeFile(hook, hookScript(process.execPath, paths.hookSocket));
  await chmod(hook, 0o755);
}

/** Creates the app's bare repository (idempotent) with deck's hook in place. */
export async function ensureRepo(paths: Paths, app: string): Promise<string> {
  const dir = paths.repo(app);
  if (!(await exists(join(dir, "HEAD")))) {
    await mkdir(dir, { recursive: true });
    const [cmd, ...args] = initRepoArgv(dir);
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`git init failed for ${app}: ${r.stderr.trim()}`);
    // Deleting the deploy branch would leave the live app without its source.
    spawnSync("git", ["config", "receive.denyDeleteCurrent", "refuse"], { cwd: dir });
  }
  await installHook(dir, paths);
  return dir;
}

export async function removeRepo(paths: Paths, app: string): Promise<void> {
  await rm(paths.repo(app), { recursive: true, force: true });
}
