import { lstat, mkdir, mkdtemp, readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * A scratch directory beside `slugDir`, so the finished build can be renamed into place atomically
 * (rename does not cross filesystems).
 */
export async function createWorkDir(slugDir: string): Promise<string> {
  const parent = dirname(slugDir);
  await mkdir(parent, { recursive: true });
  return mkdtemp(join(parent, `.${basename(slugDir)}.building-`));
}

/** Total bytes of the regular files and symlinks under `dir` (symlinks are not followed). */
export async function measureDir(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop()!;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) pending.push(path);
      else total += (await lstat(path)).size;
    }
  }
  return total;
}
