import { createHash } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { runnableTypes, type Procfile } from "../core/index.ts";
import { BuildStepError, formatDetail, formatHeader, isBuildStepError, type Buildpack, type BuildContext } from "./buildpack.ts";
import { listRepoDir, readProcfile, readRepoFile, repoEntryExists, writeRepoFile } from "./repo-file.ts";
import { requireToolchain, writeSlugEnv, type Toolchain } from "./toolchain.ts";

const PYTHON: Toolchain = {
  app: "Python app",
  command: "python3",
  install: "Python 3.8+ with its venv module (Debian: apt-get install python3 python3-venv)",
};

/** The virtualenv lives in the slug: each release gets its own, so a rollback runs its own packages. */
export const VENV_DIR = ".venv";
export const PYTHON_WEB_COMMAND = "python app.py";

export type PythonInstallSource = "requirements.txt" | "pyproject.toml";

/** The install command, run with the virtualenv's own interpreter; the pip cache is kept per app. */
export function pipInstallArgv(venvPython: string, source: PythonInstallSource, cacheDir: string): string[] {
  const what = source === "requirements.txt" ? ["-r", "requirements.txt"] : ["."];
  return [venvPython, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--cache-dir", join(cacheDir, "pip"), ...what];
}

async function installSource(dir: string): Promise<PythonInstallSource> {
  return (await repoEntryExists(dir, "requirements.txt")) ? "requirements.txt" : "pyproject.toml";
}

async function resolveProcesses(dir: string): Promise<Procfile> {
  const processes: Procfile = { ...(await readProcfile(dir)) };
  if (!processes.web && (await repoEntryExists(dir, "app.py"))) processes.web = PYTHON_WEB_COMMAND;
  if (runnableTypes(processes).length === 0) {
    throw new BuildStepError(`nothing to run: add a Procfile with a "web:" line (e.g. "web: python app.py") or an app.py`);
  }
  return processes;
}

/**
 * pip writes each script's interpreter as an absolute path into the build dir, which is gone once the
 * slug is moved into place. The slug's PATH starts with the virtualenv's bin, so `env python3` finds
 * the same interpreter wherever the slug runs.
 */
async function makeScriptsRelocatable(dir: string): Promise<number> {
  const binRel = `${VENV_DIR}/bin`;
  const binDir = join(dir, binRel);
  let rewritten = 0;
  for (const name of await listRepoDir(dir, binRel)) {
    // bin/python and friends are links (never followed), and big binaries are no scripts: both skipped.
    const text = await readRepoFile(dir, `${binRel}/${name}`).catch((e: unknown) => {
      if (isBuildStepError(e)) return undefined;
      throw e;
    });
    if (text === undefined || !text.startsWith("#!")) continue;
    const lines = text.split("\n");
    let drop = 0;
    if (lines[0].startsWith(`#!${binDir}/python`)) drop = 1;
    // pip's form for interpreter paths too long for a #! line.
    else if (lines[0] === "#!/bin/sh" && lines[1]?.startsWith(`'''exec' "${binDir}/python`) && lines[2] === "' '''") drop = 3;
    if (drop === 0) continue;
    await writeRepoFile(dir, `${binRel}/${name}`, ["#!/usr/bin/env python3", ...lines.slice(drop)].join("\n"));
    rewritten++;
  }
  return rewritten;
}

export const pythonBuildpack: Buildpack = {
  name: "python",
  label: "Python app",
  looksFor: "requirements.txt or pyproject.toml (Python)",

  async detect(dir) {
    return (await repoEntryExists(dir, "requirements.txt")) || (await repoEntryExists(dir, "pyproject.toml"));
  },

  async build(ctx: BuildContext) {
    // Fail before a long install when the app could never start.
    await resolveProcesses(ctx.dir);
    await requireToolchain(ctx, PYTHON);

    const venv = join(ctx.dir, VENV_DIR);
    await rm(venv, { recursive: true, force: true });
    const source = await installSource(ctx.dir);
    // requirements.txt pins what goes into the virtualenv: with the same file and the same Python, the
    // previous build's virtualenv is reused. (pip install . installs the app itself: never reused.)
    const key = source === "requirements.txt" ? await venvKey(ctx) : null;
    const cached = join(ctx.cacheDir, "venv-cache");
    // No readable key (a first build, or a cache the app's build left unusable) is a cache miss.
    if (key && (await readRepoFile(ctx.cacheDir, "venv-cache/key").catch(() => undefined)) === key) {
      ctx.onLine(formatHeader("Restoring the virtualenv from the cache (requirements.txt unchanged)"));
      await ctx.run(["cp", "-a", join(cached, VENV_DIR), venv]);
    } else {
      ctx.onLine(formatHeader(`Creating a virtualenv (${VENV_DIR})`));
      await ctx.run(["python3", "-m", "venv", venv]).catch((e: unknown) => {
        throw new BuildStepError(`python3 -m venv failed: install Python's venv module on the deck host (Debian: apt-get install python3-venv)`, { cause: e });
      });
      ctx.onLine(formatHeader(`Installing dependencies (pip install ${source === "requirements.txt" ? "-r requirements.txt" : "."})`));
      await ctx.run(pipInstallArgv(join(venv, "bin", "python"), source, ctx.cacheDir));
      const rewritten = await makeScriptsRelocatable(ctx.dir);
      ctx.onLine(formatDetail(`${rewritten} script${rewritten === 1 ? "" : "s"} in ${VENV_DIR}/bin made relocatable`));
      if (key) {
        const next = `${cached}.next`;
        await rm(next, { recursive: true, force: true });
        await ctx.run(["mkdir", "-p", next]);
        await ctx.run(["cp", "-a", venv, join(next, VENV_DIR)]);
        await writeRepoFile(ctx.cacheDir, "venv-cache.next/key", key);
        await rm(cached, { recursive: true, force: true });
        await rename(next, cached);
      }
    }
    await writeSlugEnv(ctx.dir, { path: [`${VENV_DIR}/bin`], dirs: { VIRTUAL_ENV: VENV_DIR }, vars: { PYTHONUNBUFFERED: "1" } });
  },

  release(dir) {
    return resolveProcesses(dir);
  },
};

/** The cache key of a virtualenv: the exact requirements.txt and the Python that runs it. */
async function venvKey(ctx: BuildContext): Promise<string | null> {
  const requirements = await readRepoFile(ctx.dir, "requirements.txt");
  if (requirements === undefined) return null;
  // Sandboxed like every build command: the app's config may put its own python3 first on PATH.
  const python = await ctx.capture(["python3", "-c", "import sys; print(sys.executable, sys.version)"]);
  const version = python.exitCode === 0 ? python.stdout.trim() : "";
  return version ? createHash("sha256").update(`${version}\n${requirements}`).digest("hex") : null;
}
