import type { ProcessInfo, Route } from "../core/index.ts";
import {
  findBuild, listApps, listReleases, listResumablePushes, listUnfinishedDeployments, q, setReleaseStatus, sql,
} from "../store/queries/index.ts";
import { activateRelease, refreshRoute, routeFor, upstreamAddress } from "./activate.ts";
import type { DeployKind, DeployState } from "./deploy-state.ts";
import { Deployment } from "./pipeline.ts";
import type { DeployDeps } from "./deps.ts";

/**
 * Brings the running state in line with the database when deck starts: deploys that were cut off by
 * a restart are marked failed and their half-started processes stopped; live processes that kept
 * running are adopted; the router gets the full route table. A live release whose processes are all
 * gone (the machine rebooted) is started again, unless the app was stopped with ps:stop.
 */
export async function reconcile(deps: DeployDeps): Promise<{ adopted: number; stopped: number; restarted: string[]; resumable: number[] }> {
  // What an earlier run of this server left in the apps' lines cannot be waiting any more (entries of
  // servers that stopped answering end their deployments as they are dropped).
  const dropped = await deps.queue.dropAbandoned();
  const ours = new Set(dropped.flatMap((e) => (e.deploymentId === null ? [] : [e.deploymentId])));
  // Pushes of that run that waited in line with their commit kept are deployed once the server is up
  // (gitd/queued-push.ts); every other unfinished deployment was cut off, unless a live server works on it.
  const resumable = (await listResumablePushes(deps.db)).filter((d) => ours.has(d.id)).map((d) => d.id);
  await endOrphanedDeployments(deps, { ours, skip: new Set(resumable) });

  const apps = await listApps(deps.db, "all");
  const known = new Set(apps.map((a) => a.name));
  const all = await deps.runtime.list();
  let stopped = 0;
  const strays: ProcessInfo[] = all.filter((p) => {
    const app = apps.find((a) => a.name === p.app);
    return !known.has(p.app) || p.generation !== app?.liveDeploymentId || app.stopped;
  });
  await Promise.all(strays.map(async (p) => {
    await deps.runtime.stop(p.id, deps.config.stopGrace * 1000);
    stopped++;
  }));

  const routes: Route[] = [];
  const restarted: string[] = [];
  for (const app of apps) {
    const live = app.stopped ? [] : all.filter((p) => p.app === app.name && p.generation === app.liveDeploymentId);
    const webs = live.filter((p) => p.type === "web" && p.port);
    routes.push(await routeFor(deps, app, webs.map(upstreamAddress)));
    if (app.liveDeploymentId !== null && live.length === 0 && !app.stopped) restarted.push(app.name);
  }
  await deps.router.replaceAll(routes);

  for (const name of restarted) {
    const app = apps.find((a) => a.name === name)!;
    const release = (await listReleases(deps.db, app.id, 100)).find((r) => r.status === "live");
    const build = release ? await findBuild(deps.db, release.buildId) : null;
    if (!release || !build) continue;
    // One app that cannot start again must not keep deck (and every other app) from starting.
    await deps.queue.run(app, "reconcile", () => undefined, async () => {
      const r = await activateRelease(deps, { app, release, build, deploymentId: app.liveDeploymentId!, runReleasePhase: false, out: (l) => deps.log(`${app.name}: ${l.trim()}`) });
      if (!r.ok) {
        deps.log(`${app.name}: could not restart v${release.version}: ${r.message}`);
        await setReleaseStatus(deps.db, release.id, "live");
      }
    }, undefined, { wait: true }).catch((e: Error) => deps.log(`${app.name}: could not restart v${release.version}: ${e.stack ?? e.message}`));
  }
  return { adopted: all.length - stopped, stopped, restarted, resumable };
}

/** A deployment row is written just before its entry in the app's line: one this new may still get its entry. */
const ORPHAN_GRACE_SECONDS = 60;

/**
 * Ends the unfinished deployments no deck server works on any more: no entry in the apps' lines names
 * them (their server died, or the entry was dropped as stale). `ours`: those the previous run of this
 * server left, ended at once; any other is ended once it has not changed for a minute (another server
 * may be between writing the row and enqueueing it). Pushes kept in line for their server's next start
 * are left to that start, and `skip` too. A deployment that had put its release live only had its
 * drain left, and counts as succeeded.
 */
export async function endOrphanedDeployments(deps: DeployDeps, options: { ours?: Set<number>; skip?: Set<number> } = {}): Promise<number> {
  const ours = options.ours ?? new Set<number>();
  const elsewhere = new Set((await deps.db.anyFirst(q`SELECT deployment_id FROM app_queue WHERE deployment_id IS NOT NULL`)).map(Number));
  // A redeploy names its deployment in its entry just after making the row.
  const redeploying = new Set((await deps.db.anyFirst(q`SELECT app_id FROM app_queue WHERE running AND deployment_id IS NULL`)).map(Number));
  const apps = await listApps(deps.db, "all");
  const ended: number[] = [];
  for (const d of await listUnfinishedDeployments(deps.db)) {
    if (options.skip?.has(d.id) || elsewhere.has(d.id) || (d.kind !== "push" && redeploying.has(d.appId))) continue;
    if (!ours.has(d.id) && (d.kept || d.quietSeconds < ORPHAN_GRACE_SECONDS)) continue;
    const app = apps.find((a) => a.id === d.appId);
    const deployment = new Deployment(deps, d.id, app?.name ?? String(d.appId), d.kind as DeployKind, d.status as DeployState);
    ended.push(d.id);
    // Put live before its server stopped: only the old processes' drain was left (they are strays now).
    if (app?.liveDeploymentId === d.id) {
      if (deployment.state === "switching") await deployment.move("draining");
      if (deployment.state === "draining") await deployment.move("succeeded");
      continue;
    }
    await deployment.end("interrupted", "interrupted", "interrupted: the deck server stopped during this deploy");
  }
  // Releases such deployments made never went live (nor did an old one no deployment names); those a
  // running deployment makes are left alone.
  await deps.db.query(q`UPDATE releases r SET status = 'failed'
    WHERE r.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.release_id = r.id
                       AND d.status IN ('queued', 'building', 'releasing', 'starting', 'checking', 'switching', 'draining'))
      AND (r.created_at < now() - make_interval(secs => ${ORPHAN_GRACE_SECONDS})
           OR EXISTS (SELECT 1 FROM deployments d WHERE d.release_id = r.id AND d.id = ANY(${sql.array([...ours, ...ended], "int8")})))`);
  return ended.length;
}

/**
 * Sends every app's route to the router again, each under its route lock so no deploy's switch is
 * undone: after the router restarted, a change its last worker saved but never answered is set right.
 */
export async function resendRoutes(deps: DeployDeps): Promise<number> {
  const apps = await listApps(deps.db, "all");
  for (const app of apps) await refreshRoute(deps, app);
  return apps.length;
}
