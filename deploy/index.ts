export { AppQueue, holderName, Semaphore, type WorkKind } from "./app-queue.ts";
export { pathsFor, type Paths } from "./paths.ts";
export type { DeployDeps, DeployOutcome } from "./deps.ts";
export { deployPush, Deployment, pruneSlugs, redeploy, type PushRequest, type RedeployOptions } from "./pipeline.ts";
export { ACTIVE_STATES, canMove, DeployEvents, FINAL_STATES, isFinal, transition, type DeployEvent, type DeployKind, type DeployState } from "./deploy-state.ts";
export { RouteLocks } from "./activate.ts";
export { reconcile, resendRoutes } from "./reconcile.ts";
export { readLogTail, followLog, appendAppLog } from "./app-log.ts";
export { callerFor, authorizeApp, authorizeConfigReveal, orgForNewApp, REVEAL_CONFIG, type Caller } from "./access.ts";
export * from "./operations.ts";
export { describeRouterStatus, routerStatusOf, type RouterStatus } from "./router-status.ts";
export * from "./router-settings.ts";
export * from "./accounts.ts";
export * from "./webhooks.ts";
export {
  acmeEligible, addOwnCertificate, CertManager, parseCertificateBundle, pushCertificates, removeCertificate, removeDefaultCertificate, setDefaultCertificate, tlsStatusOf,
  type CertificateBundle, type CertManagerDeps, type TlsState, type TlsStatus,
} from "./certs.ts";
export { bandwidthReport } from "./metering.ts";
export {
  BuildRun, BuildRuns, cancelBuilds, classifyFailure, clearBuildCache, findBuildOutput, listBuilds, openBuildCgroup, protectedBuildIds, recordRepoSize,
  type BuildOutputTarget, type BuildRunState, type BuildStatus, type BuildSummary, type CancelledBuild,
} from "./builds.ts";
