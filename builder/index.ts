export { runBuild } from "./build.ts";
export { checkoutCommit, validateCommitSha, CheckoutError, type CheckoutOptions } from "./checkout.ts";
export { gitArchiveArgv, tarExtractArgv, isCommitSha, shortSha } from "./commands.ts";
export { createBuildEnv, type BuildEnvOptions } from "./build-env.ts";
export { execCommand, execPipeline, stopGroup, isGroupAlive, type ExecOptions, type ExecResult } from "./exec.ts";
export { measureDir } from "./slug.ts";
