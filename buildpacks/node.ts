import { createHash } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { runnableTypes, type Procfile } from "../core/index.ts";
import { BuildStepError, formatHeader, type Buildpack, type BuildContext } from "./buildpack.ts";
import { readProcfile, readRepoFile, repoEntryExists, writeRepoFile } from "./repo-file.ts";

/** Lockfiles of large apps run to tens of MB; they are hashed, never shown. */
const LOCKFILE_MAX_BYTES = 256 * 1024 * 1024;

interface PackageJson {
  scripts?: Record<string, string>;
}

/** Root scripts `npm ci` would run: while any is defined, installed modules are never reused. */
const INSTALL_SCRIPTS = ["preinstall", "install", "postinstall", "prepare"];

/**
 * The key under which an installed node_modules can be reused: the exact lockfile, on the same Node.js
 * version and platform (native modules are built for both).
 */
async function modulesKey(dir: string): Promise<string | null> {
  for (const name of ["npm-shrinkwrap.json", "package-lock.json"]) {
    const text = await readRepoFile(dir, name, { maxBytes: LOCKFILE_MAX_BYTES });
    if (text !== undefined) return createHash("sha256").update(`${process.version} ${process.platform} ${process.arch}\n${text}`).digest("hex");
  }
  return null;
}

/** Relative to the app's cache dir. */
const MODULES_CACHE = "node_modules-cache";

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
  const text = await readRepoFile(dir, "package.json");
  if (text === undefined) throw new BuildStepError("package.json is missing from the repository root");
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
  const locked = (await repoEntryExists(dir, "package-lock.json")) || (await repoEntryExists(dir, "npm-shrinkwrap.json"));
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
    return repoEntryExists(dir, "package.json");
  },

  async build(ctx: BuildContext) {
    const pkg = await readPackageJson(ctx.dir);
    // Fail before a long install when the app could never start.
    resolveProcesses(pkg, await readProcfile(ctx.dir));

    const mode = await detectInstallMode(ctx.dir);
    const reusable = mode === "ci" && !INSTALL_SCRIPTS.some((s) => pkg.scripts?.[s]);
    const key = reusable ? await modulesKey(ctx.dir) : null;
    const cached = join(ctx.cacheDir, MODULES_CACHE);
    // The cache is written by the app's own builds: read it as carefully as the repository. No
    // readable key (a first build, or a cache the build left unusable) is a cache miss.
    const cachedKey = key ? ((await readRepoFile(ctx.cacheDir, `${MODULES_CACHE}/key`).catch(() => undefined)) ?? "") : "";
    if (key && cachedKey === key && (await repoEntryExists(ctx.cacheDir, `${MODULES_CACHE}/node_modules`))) {
      // Same lockfile as the last install: hard-link the installed tree instead of reinstalling it.
      ctx.onLine(formatHeader("Restoring dependencies from the cache (lockfile unchanged)"));
      await ctx.run(["cp", "-al", join(cached, "node_modules"), join(ctx.dir, "node_modules")]);
    } else {
      ctx.onLine(formatHeader(`Installing dependencies (npm ${mode})`));
      await ctx.run(npmInstallArgv(mode, ctx.cacheDir));
      if (key && (await repoEntryExists(ctx.dir, "node_modules"))) {
        const next = `${cached}.next`;
        await rm(next, { recursive: true, force: true });
        await ctx.run(["mkdir", "-p", next]);
        await ctx.run(["cp", "-al", join(ctx.dir, "node_modules"), join(next, "node_modules")]);
        await writeRepoFile(ctx.cacheDir, `${MODULES_CACHE}.next/key`, key);
        await rm(cached, { recursive: true, force: true });
        await rename(next, cached);
      }
    }

    if (pkg.scripts?.build) {
      ctx.onLine(formatHeader("Building (npm run build)"));
      await ctx.run(npmBuildArgv());
    }
  },

  async release(dir) {
    return resolveProcesses(await readPackageJson(dir), await readProcfile(dir));
  },
};
