import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { runnableTypes, type Procfile } from "../core/index.ts";
import { BuildStepError, fileExists, formatHeader, readProcfile, type Buildpack, type BuildContext } from "./buildpack.ts";

interface PackageJson {
  scripts?: Record<string, string>;
}

/** Which npm command installs dependencies: `ci` needs a lockfile and installs exactly what it pins. */
export type NpmInstallMode = "ci" | "install";

/**
 * The install command. The per-app cache plus --prefer-offline makes a rebuild of unchanged
 * dependencies skip the registry entirely.
 */
export function npmInstallArgv(mode: NpmInstallMode, cacheDir: string): string[] {
  return ["npm", mode, "--cache", join(cacheDir, "npm"), "--prefer-offline", "--no-audit", "--no-fund"];
}

export function npmBuildArgv(): string[] {
  return ["npm", "run", "build"];
}

async function readPackageJson(dir: string): Promise<PackageJson> {
  const text = await readFile(join(dir, "package.json"), "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new BuildStepError(`package.json is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new BuildStepError("package.json must contain a JSON object");
  }
  const scripts = (parsed as { scripts?: unknown }).scripts;
  if (scripts !== undefined && (scripts === null || typeof scripts !== "object" || Array.isArray(scripts))) {
    throw new BuildStepError(`package.json "scripts" must be an object of script names to commands`);
  }
  return parsed as PackageJson;
}

async function detectInstallMode(dir: string): Promise<NpmInstallMode> {
  const locked = (await fileExists(join(dir, "package-lock.json"))) || (await fileExists(join(dir, "npm-shrinkwrap.json")));
  return locked ? "ci" : "install";
}

/** The Procfile's types, with `web` defaulting to `npm start` when the app has a start script. */
function resolveProcesses(pkg: PackageJson, procfile: Procfile | undefined): Procfile {
  const processes: Procfile = { ...procfile };
  if (!processes.web && pkg.scripts?.start) processes.web = "npm start";
  if (runnableTypes(processes).length === 0) {
    throw new BuildStepError(`nothing to run: add a Procfile with a "web:" line or a "start" script to package.json`);
  }
  return processes;
}

export const nodeBuildpack: Buildpack = {
  name: "node",
  label: "Node.js app",
  looksFor: "package.json (Node.js)",

  detect(dir) {
    return fileExists(join(dir, "package.json"));
  },

  async build(ctx: BuildContext) {
    const pkg = await readPackageJson(ctx.dir);
    // Fail before a long install when the app could never start.
    resolveProcesses(pkg, await readProcfile(ctx.dir));

    const mode = await detectInstallMode(ctx.dir);
    ctx.onLine(formatHeader(`Installing dependencies (npm ${mode})`));
    await ctx.run(npmInstallArgv(mode, ctx.cacheDir));

    if (pkg.scripts?.build) {
      ctx.onLine(formatHeader("Building (npm run build)"));
      await ctx.run(npmBuildArgv());
    }
  },

  async release(dir) {
    return resolveProcesses(await readPackageJson(dir), await readProcfile(dir));
  },
};
