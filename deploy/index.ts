export { AppQueue, holderName, type WorkKind } from "./app-queue.ts";
export { BuildSlots, type BuildSlot } from "./build-slots.ts";
export { BUILD_EXCHANGE_PREFIX, RemoteBuild, type RemoteBuildResult } from "./build-exchange.ts";
export { pathsFor, type Paths } from "./paths.ts";
export type { DeployDeps, DeployOutcome } from "./deps.ts";
export { deployPush, Deployment, pruneSlugs, redeploy, type PushRequest, type RedeployOptions } from "./pipeline.ts";
export { ACTIVE_STATES, canMove, DeployEvents, FINAL_STATES, isFinal, transition, type DeployEvent, type DeployKind, type DeployState } from "./deploy-state.ts";
export {
  appUrl, drainAndStop, formationFor, refreshRoute, routeFor, RouteLocks, upstreamAddress, withRouteLock,
} from "./activate.ts";
export { endOrphanedDeployments, reconcile, resendRoutes } from "./reconcile.ts";
export { readLogTail, followLog, appendAppLog } from "./app-log.ts";
export {
  acmeEligible, AcmeIssuer, CertManager, forgetCertificate, pushCertificates, reasonOf, requestCertificate,
  type CertificateIssuer, type CertManagerDeps, type ObtainedCertificate,
} from "./cert-manager.ts";
export { BuildRun, BuildRuns, protectedBuildIds, type BuildRunState } from "./build-runs.ts";
