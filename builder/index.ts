export { runBuild } from "./build.ts";
export { checkoutCommit, validateCommitSha, CheckoutError, type CheckoutOptions } from "./checkout.ts";
export { gitArchiveArgv, tarExtractArgv, isCommitSha, shortSha } from "./commands.ts";
export { createBuildEnv, type BuildEnvOptions } from "./build-env.ts";
export { execCommand, execPipeline, stopGroup, isGroupAlive, type ExecOptions, type ExecResult } from "./exec.ts";
export { measureDir } from "./slug.ts";
export { removeBuildLeftovers, type BuildLeftoverOptions } from "./leftovers.ts";
export {
  buildInCgroup, createBuildCgroup, runInCgroup, currentBuildCgroup, cgroupEnterArgv, cpuQuotaUs, describeOutOfMemory, formatBytes, resolveExecutable,
  DEFAULT_PIDS_MAX, type BuildCgroup, type BuildLimits, type CgroupResult, type CgroupOptions,
} from "./limits.ts";
export { type BuildOptions } from "./build.ts";
export { readImageRef, hasDockerfile, DOCKERFILE_NEEDS_DOCKER, type ImageEngine, type ImageBuildLimits, type BuiltImage } from "./docker-build.ts";
export { BuildWorker, type BuildWorkerOptions, type WorkerBuildResult } from "./worker.ts";
