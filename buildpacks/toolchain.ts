import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, rm, symlink, utimes } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { SLUG_ENV_FILE, type SlugEnv } from "../core/index.ts";
import { BuildStepError, type BuildContext, type RunOptions } from "./buildpack.ts";
import { writeRepoFile } from "./repo-file.ts";

/** What a language needs on the deck host, and how to get it, for the "not installed" message. */
export interface Toolchain {
  /** `Go app`, as in "Go app detected but ...". */
  app: string;
  command: string;
  install: string;
}

/** The first executable named `command` on `path` (a PATH value), or undefined. */
export async function findExecutable(command: string, path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      if ((await lstat(candidate)).isDirectory()) continue;
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Fails the build with one line naming what to install when the build env cannot find the tool. */
export async function requireToolchain(ctx: BuildContext, tool: Toolchain): Promise<string> {
  const found = await findExecutable(tool.command, ctx.env.PATH);
  if (!found) {
    throw new BuildStepError(`${tool.app} detected but \`${tool.command}\` is not installed on the deck host: install ${tool.install}`);
  }
  return found;
}

/**
 * Runs a short query command (`cargo metadata`) through the build's context, sandboxed like every
 * other command, and returns its stdout; a non-zero exit fails the build with its last stderr line.
 */
export async function captureOutput(ctx: BuildContext, argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const result = await ctx.capture(argv, opts);
  if (result.exitCode !== 0) {
    const why = result.stderrTail.filter((l) => l.trim()).pop()?.trim() ?? `exit code ${result.exitCode}`;
    throw new BuildStepError(`${argv.slice(0, 2).join(" ")} failed: ${why}`);
  }
  return result.stdout;
}

/** Writes the run-time env a slug's processes need (see core/slug-env.ts). */
export async function writeSlugEnv(dir: string, env: Partial<SlugEnv>): Promise<void> {
  await writeRepoFile(dir, SLUG_ENV_FILE, `${JSON.stringify({ path: env.path ?? [], dirs: env.dirs ?? {}, vars: env.vars ?? {} }, null, 2)}\n`);
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([lstat(a), lstat(b)]);
    if (x.isSymbolicLink() || y.isSymbolicLink()) return x.isSymbolicLink() && y.isSymbolicLink() && (await readlink(a)) === (await readlink(b));
    if (!x.isFile() || !y.isFile() || x.size !== y.size || (x.mode & 0o777) !== (y.mode & 0o777)) return false;
    const hash = async (p: string) => createHash("sha256").update(await readFile(p)).digest("hex");
    return (await hash(a)) === (await hash(b));
  } catch {
    return false;
  }
}

/**
 * Makes `to` a copy of `from`, leaving files whose content is unchanged untouched (old mtime) and
 * giving every changed file the current time. Compilers that judge freshness by mtime (cargo) then
 * rebuild exactly what changed, whatever time the checkout stamped on the files: a checkout stamps
 * every file with its commit's time, which can be older than the previous build's outputs.
 */
export async function syncTree(from: string, to: string, skip: ReadonlySet<string> = new Set()): Promise<void> {
  await mkdir(to, { recursive: true });
  const wanted = new Set((await readdir(from)).filter((n) => !skip.has(n)));
  for (const name of await readdir(to)) {
    if (!wanted.has(name)) await rm(join(to, name), { recursive: true, force: true });
  }
  const now = new Date();
  for (const name of wanted) {
    const src = join(from, name);
    const dst = join(to, name);
    const info = await lstat(src);
    if (info.isDirectory()) {
      const existing = await lstat(dst).catch(() => null);
      if (existing && !existing.isDirectory()) await rm(dst, { force: true });
      await syncTree(src, dst);
    } else if (!(await sameFile(src, dst))) {
      await rm(dst, { recursive: true, force: true });
      if (info.isSymbolicLink()) {
        await symlink(await readlink(src), dst);
      } else {
        await copyFile(src, dst);
        await chmod(dst, info.mode & 0o777);
        await utimes(dst, now, now);
      }
    }
  }
}
