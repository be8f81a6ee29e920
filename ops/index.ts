/**
 * Every operation users run, with its permission check: SSH commands (gitd/commands.ts) and API routes
 * (api/routes) parse, call one of these, and render the result.
 */
export { authorizeApp, callerFor, orgForNewApp, REVEAL_CONFIG, type Caller } from "./access.ts";
export type { Out } from "./audit.ts";
export * from "./apps.ts";
export * from "./config.ts";
export * from "./releases.ts";
export * from "./processes.ts";
export * from "./logs.ts";
export * from "./router-settings.ts";
export { describeRouterStatus, routerStatusOf, type RouterStatus } from "./router-status.ts";
export * from "./accounts.ts";
export * from "./domains.ts";
export * from "./certs.ts";
export * from "./webhooks.ts";
export * from "./builds.ts";
export { bandwidthReport } from "./metering.ts";
export { describeError, hiddenErrorMessage, lookupError, type ErrorDisclosure } from "./error-catalogue.ts";
// What every operation is given: the deck server's parts (the same as the deploy pipeline's).
export type { DeployDeps } from "../deploy/index.ts";
export * from "./notify.ts";
export * from "./uptime.ts";
export * from "./metrics.ts";
export * from "./alerts.ts";
