import { constants } from "node:fs";
import { access, lstat } from "node:fs/promises";
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
