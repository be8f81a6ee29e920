/** What deck reports of the bandwidth the router counted (saved by router/usage-saver.ts). */
import type { DeployDeps } from "../deploy/index.ts";
import { bandwidthOf, type BandwidthHour } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";

/** An app's metered traffic per hour over the last `hours` hours (newest first). */
export async function bandwidthReport(deps: DeployDeps, caller: Caller, appName: string, hours: number): Promise<BandwidthHour[]> {
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  return bandwidthOf(deps.db, app.id, new Date(Date.now() - hours * 3_600_000));
}
