import type { Buildpack } from "./buildpack.ts";
import { genericBuildpack } from "./generic.ts";
import { nodeBuildpack } from "./node.ts";
import { staticBuildpack } from "./static.ts";

export {
  BuildStepError,
  isBuildStepError,
  formatHeader,
  formatDetail,
  readProcfile,
  type Buildpack,
  type BuildContext,
  type RunOptions,
} from "./buildpack.ts";
export { nodeBuildpack, npmInstallArgv, npmBuildArgv, type NpmInstallMode } from "./node.ts";
export { staticBuildpack, STATIC_SERVER_PATH, STATIC_WEB_COMMAND } from "./static.ts";
export { genericBuildpack } from "./generic.ts";

/** Detection order: the first buildpack whose detect() is true builds the app. */
export const BUILDPACKS: readonly Buildpack[] = [nodeBuildpack, staticBuildpack, genericBuildpack];

export async function detectBuildpack(dir: string, buildpacks: readonly Buildpack[] = BUILDPACKS): Promise<Buildpack | undefined> {
  for (const pack of buildpacks) {
    if (await pack.detect(dir)) return pack;
  }
  return undefined;
}

/** One line naming what every buildpack looked for, for a repository none of them matched. */
export function describeNoBuildpack(buildpacks: readonly Buildpack[] = BUILDPACKS): string {
  const wants = buildpacks.map((b) => b.looksFor);
  const list = wants.length > 1 ? `${wants.slice(0, -1).join(", ")} and ${wants[wants.length - 1]}` : wants.join("");
  return `no buildpack matched: deck looked for ${list} in the repository root`;
}
