import { BuildStepError, type Buildpack } from "./buildpack.ts";
import { genericBuildpack } from "./generic.ts";
import { goBuildpack } from "./go.ts";
import { nodeBuildpack } from "./node.ts";
import { pythonBuildpack } from "./python.ts";
import { rustBuildpack } from "./rust.ts";
import { staticBuildpack } from "./static.ts";

export {
  BuildStepError,
  isBuildStepError,
  formatHeader,
  formatDetail,
  type Buildpack,
  type BuildContext,
  type CaptureResult,
  type RunOptions,
} from "./buildpack.ts";
export { nodeBuildpack, npmInstallArgv, npmBuildArgv, type NpmInstallMode } from "./node.ts";
export { staticBuildpack, STATIC_SERVER_PATH, STATIC_WEB_COMMAND } from "./static.ts";
export { genericBuildpack } from "./generic.ts";
export { pythonBuildpack, pipInstallArgv, PYTHON_WEB_COMMAND, VENV_DIR, type PythonInstallSource } from "./python.ts";
export { goBuildpack, goBuildArgv, goBuildEnv, goCommandName, goSourceDir, parseGoModule } from "./go.ts";
export {
  rustBuildpack, cargoBuildArgv, cargoBuildEnv, parseCargoDefaultBinary, parseCargoMetadata, planCargoBuild, rustSourceDir, rustTargetDir, type CargoPlan,
} from "./rust.ts";
export { BIN_DIR } from "./compiled.ts";
export { findExecutable, writeSlugEnv, type Toolchain } from "./toolchain.ts";
export { syncTree, syncTreeArgv } from "./sync-tree.ts";
export {
  copyRepoFile, ensureRepoDir, listRepoDir, readProcfile, readRepoBytes, readRepoFile, repoEntryExists, writeRepoFile, MANIFEST_MAX_BYTES,
  type ReadRepoFileOptions, type WriteRepoFileOptions,
} from "./repo-file.ts";

/**
 * Detection order: the first buildpack whose detect() is true builds the app. Languages come before
 * static and generic (a Python app may ship an index.html and a Procfile); Node.js comes first, so a
 * repository with both package.json and requirements.txt is a Node.js app unless `builder:set` says
 * otherwise.
 */
export const BUILDPACKS: readonly Buildpack[] = [nodeBuildpack, pythonBuildpack, goBuildpack, rustBuildpack, staticBuildpack, genericBuildpack];

export async function detectBuildpack(dir: string, buildpacks: readonly Buildpack[] = BUILDPACKS): Promise<Buildpack | undefined> {
  for (const pack of buildpacks) {
    if (await pack.detect(dir)) return pack;
  }
  return undefined;
}

/** What `builder:set APP …` accepts: every buildpack, the Docker engine, or back to detection. */
export const BUILDER_CHOICES = ["dockerfile", ...BUILDPACKS.map((b) => b.name), "auto"] as const;

export function isBuilderChoice(value: string): boolean {
  return (BUILDER_CHOICES as readonly string[]).includes(value);
}

/**
 * The buildpack for an app: the one its `builder` setting names (which beats detection), else the
 * first that detects the repository. A named buildpack must still find its files, so the author gets
 * one line saying what is missing rather than a crash halfway through the build. "dockerfile" is not
 * a buildpack: the builder handles it before it gets here.
 */
export async function selectBuildpack(dir: string, builder?: string, buildpacks: readonly Buildpack[] = BUILDPACKS): Promise<Buildpack | undefined> {
  if (!builder || builder === "auto") return detectBuildpack(dir, buildpacks);
  const pack = buildpacks.find((b) => b.name === builder);
  if (!pack) throw new BuildStepError(`the app's builder is set to "${builder}", which deck does not know: use one of ${BUILDER_CHOICES.join(", ")}`);
  if (!(await pack.detect(dir))) {
    throw new BuildStepError(`the app's builder is set to "${builder}" but the repository has no ${pack.looksFor}: add it, or run builder:set APP auto`);
  }
  return pack;
}

/** One line naming what every buildpack looked for, for a repository none of them matched. */
export function describeNoBuildpack(buildpacks: readonly Buildpack[] = BUILDPACKS): string {
  const wants = buildpacks.map((b) => b.looksFor);
  const list = wants.length > 1 ? `${wants.slice(0, -1).join(", ")} and ${wants[wants.length - 1]}` : wants.join("");
  return `no buildpack matched: deck looked for ${list} in the repository root (a Dockerfile builds with DECK_RUNTIME=docker)`;
}
