import { DeckError } from "../core/index.ts";
import { redeploy, type DeployDeps } from "../deploy/index.ts";
import {
  audit, findApp, findBuild, findDeployment, findReleaseByVersion, insertRelease, listDeployments, listReleases, readBuildLogs, saveConfigVars, q,
  type AppRow, type DeploymentRow, type ReleaseRow,
} from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import type { Out } from "./audit.ts";

/** An app's releases and deployments: the history, the live release, rollback. */

export async function releasesOf(deps: DeployDeps, caller: Caller, name: string): Promise<{ app: AppRow; releases: ReleaseRow[] }> {
  const app = await authorizeApp(deps.db, caller, "app:read", name);
  return { app, releases: await listReleases(deps.db, app.id) };
}

/** The app's live release, read afresh (null before the first deploy). */
export async function liveRelease(deps: DeployDeps, app: AppRow): Promise<ReleaseRow | null> {
  const fresh = await findApp(deps.db, app.name);
  if (!fresh?.liveDeploymentId) return null;
  const rows = await listReleases(deps.db, app.id, 100);
  return rows.find((r) => r.status === "live") ?? null;
}

/** Rolls back to vN (or the release before the live one) with no rebuild: a new release of the old artifact. */
/**
 * Rolls the app back to the release before its live one (or to `rawVersion`). `onlyFrom` (deck's own
 * rollback on an alert) makes it roll back only while that app still has that release live, checked once
 * it is the app's turn in line: a push that went live while the rollback waited is not undone.
 */
export async function rollback(
  deps: DeployDeps, caller: Caller, name: string, rawVersion: string | undefined, out: Out, onlyFrom?: { appId: number; version: number },
): Promise<{ version: number; target: number }> {
  const app = await authorizeApp(deps.db, caller, "release:rollback", name);
  let wanted: number | undefined;
  if (rawVersion !== undefined) {
    const m = /^v?(\d{1,9})$/.exec(rawVersion);
    if (!m) throw new DeckError("bad_argument", `"${rawVersion.slice(0, 20)}" is not a release version like v3`);
    wanted = Number(m[1]);
  }
  return deps.queue.run(app, "rollback", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const current = await liveRelease(deps, app);
    if (!current) throw new DeckError("no_release", `${app.name} has no live release to roll back from`);
    if (onlyFrom && (onlyFrom.appId !== app.id || onlyFrom.version !== current.version)) {
      throw new DeckError("conflict", `v${current.version} of ${app.name} went live after the alert on v${onlyFrom.version}; not rolled back`);
    }
    let target: ReleaseRow | null;
    if (wanted === undefined) {
      target = (await listReleases(deps.db, app.id, 100)).find((r) => r.version < current.version && r.status !== "failed") ?? null;
      if (!target) throw new DeckError("no_release", `${app.name} has no earlier release to roll back to (see releases ${app.name})`);
    } else {
      target = await findReleaseByVersion(deps.db, app.id, wanted);
      if (!target) throw new DeckError("no_release", `${app.name} has no release v${wanted} (see releases ${app.name})`);
      if (target.id === current.id) throw new DeckError("no_release", `v${wanted} is already live`);
    }
    const build = await findBuild(deps.db, target.buildId);
    if (!build?.slugPath || build.status !== "succeeded") throw new DeckError("artifact_pruned", `the build of v${target.version} is no longer kept (deck keeps the last ${deps.config.keepReleases}); push that commit again instead`);
    const pruned = await deps.db.maybeOneFirst(q`SELECT pruned_at FROM builds WHERE id = ${build.id}`);
    if (pruned) throw new DeckError("artifact_pruned", `the build of v${target.version} is no longer kept (deck keeps the last ${deps.config.keepReleases}); push that commit again instead`);
    const rel = await deps.db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: target.buildId, config: target.config, commitSha: target.commitSha, description: `Rollback to v${target.version}`, createdBy: caller.user.id }));
    await redeploy(deps, caller.user.id, app, "rollback", rel, false, out, { commit: (tx) => saveConfigVars(tx, app.id, target.config), unchanged: "config unchanged" });
    await audit(deps.db, { userId: caller.user.id, action: "release:rollback", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, to: target.version } });
    return { version: rel.version, target: target.version };
  });
}

// ---------- deployments ----------
/** The app's deployments, newest first: `limit` of them with ids below `before`. */
export async function deploymentsOf(deps: DeployDeps, caller: Caller, name: string, page: { limit: number; before?: number }): Promise<Record<string, unknown>[]> {
  const app = await authorizeApp(deps.db, caller, "app:read", name);
  return listDeployments(deps.db, app.id, page.limit, page.before);
}

/** One deployment of the app with its build log (whoever may read the app's logs). */
export async function deploymentWithLog(deps: DeployDeps, caller: Caller, name: string, id: number): Promise<{ deployment: DeploymentRow; log: string[] }> {
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const deployment = await findDeployment(deps.db, id);
  if (!deployment || deployment.appId !== app.id) throw new DeckError("not_found", `${app.name} has no deployment ${id}`);
  return { deployment, log: await readBuildLogs(deps.db, deployment.id) };
}
