/**
 * How many bytes an app keeps on deck's disks, for the storage meter: its git repository and its build
 * artifacts (the layout of deploy/paths.ts), plus its Docker images when the runtime has them.
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** The directories holding an app's files under the data dir: repos/APP.git and apps/APP (its slugs). */
export function listStorageDirs(dataDir: string, app: string): string[] {
  return [join(dataDir, "repos", `${app}.git`), join(dataDir, "apps", app)];
}

/** An entry that vanished while it was walked (a build finishing, git gc): it no longer takes space. */
const isGone = (e: unknown) => ["ENOENT", "ENOTDIR"].includes((e as NodeJS.ErrnoException).code ?? "");

/**
 * Total size of the regular files under `dirs`: a stat walk that never follows a symlink (a link
 * pointing out of the tree must not bill what it points to), counts a file hard-linked in several
 * places once, and takes a missing directory as empty. Other errors (permissions) throw: a size that
 * silently left files out would under-bill without a word.
 */
export async function measureStorage(dirs: readonly string[]): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const pending: string[] = [];
  for (const dir of dirs) {
    const st = await lstat(dir).catch((e: unknown) => (isGone(e) ? null : Promise.reject(e)));
    if (st?.isDirectory()) pending.push(dir);
  }
  while (pending.length > 0) {
    const dir = pending.pop()!;
    const entries = await readdir(dir, { withFileTypes: true }).catch((e: unknown) => (isGone(e) ? [] : Promise.reject(e)));
    const files: string[] = [];
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) pending.push(path);
      else if (entry.isFile()) files.push(path);
    }
    const stats = await Promise.all(files.map((f) => lstat(f, { bigint: true }).catch((e: unknown) => (isGone(e) ? null : Promise.reject(e)))));
    for (const st of stats) {
      if (!st?.isFile()) continue;
      if (st.nlink > 1n) {
        const inode = `${st.dev}:${st.ino}`;
        if (seen.has(inode)) continue;
        seen.add(inode);
      }
      total += Number(st.size);
    }
  }
  return total;
}
