import { rm } from "node:fs/promises";
import { checkAppName, DeckError, type ProcessInfo } from "../core/index.ts";
import { BUILDER_CHOICES, isBuilderChoice } from "../buildpacks/index.ts";
import { parseByteSize } from "../config/index.ts";
import { appUrl, formationFor, pushCertificates, routeFor, upstreamAddress, withRouteLock, type DeployDeps } from "../deploy/index.ts";
import {
  audit, deleteApp, findApp, findBuild, insertApp, listApps, listSlugBuilds, setAppBuilder, setAppLimits, setHealthCheckPath, q,
  type AppRow, type ReleaseRow,
} from "../store/queries/index.ts";
import { authorizeApp, orgForNewApp, type Caller } from "./access.ts";
import { liveRelease } from "./releases.ts";
import { routerStatusOf, type RouterStatus } from "./router-status.ts";

/**
 * The operations users run on apps as a whole: create, list, destroy, report, and the settings of how
 * they are built and run. Each authorises, changes the database first, then the running state, and
 * audits the result.
 */

export async function createApp(deps: DeployDeps, caller: Caller, rawName: string): Promise<AppRow> {
  const check = checkAppName(rawName);
  if (!check.ok) throw new DeckError("invalid_app_name", check.message);
  const orgId = orgForNewApp(caller) ?? (caller.actor.isAdmin ? null : undefined);
  if (orgId === undefined) throw new DeckError("forbidden", "permission denied: creating apps needs the member role or higher in an organisation");
  const existing = await findApp(deps.db, check.name);
  if (existing) throw new DeckError("app_exists", `app "${check.name}" already exists; pick another name`);
  const targetOrg = orgId ?? (await deps.db.oneFirst(q`SELECT id FROM organizations ORDER BY id LIMIT 1`) as number);
  const app = await insertApp(deps.db, { name: check.name, orgId: Number(targetOrg), createdBy: caller.user.id, sandboxUidBase: deps.config.sandboxUidBase });
  await deps.repos.ensure(app.name);
  // Known to the router from the start, so its host answers 503 (no release yet) rather than 404.
  await deps.router.setRoute(await routeFor(deps, app, []));
  await audit(deps.db, { userId: caller.user.id, action: "app:create", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
  return app;
}

export async function listVisibleApps(deps: DeployDeps, caller: Caller): Promise<AppRow[]> {
  if (caller.actor.isAdmin) return listApps(deps.db, "all");
  const inOrgs = await listApps(deps.db, [...caller.actor.roles.keys()]);
  const granted = caller.actor.appRoles?.size ? (await listApps(deps.db, "all")).filter((a) => caller.actor.appRoles!.has(a.id) && !inOrgs.some((o) => o.id === a.id)) : [];
  return [...inOrgs, ...granted].sort((a, b) => a.name.localeCompare(b.name));
}

export async function destroyApp(deps: DeployDeps, caller: Caller, name: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "app:destroy", name);
  // Under the route lock until the row is gone, so no refresh sends the route again meanwhile.
  await deps.queue.run(app, "destroy", () => undefined, () => withRouteLock(deps, app.name, async () => {
    await deps.router.removeRoute(app.name);
    const procs = await deps.runtime.list(app.name);
    await Promise.all(procs.map((p) => deps.runtime.stop(p.id, deps.config.stopGrace * 1000)));
    if (deps.removeArtifactImage) {
      for (const b of await listSlugBuilds(deps.db, app.id)) if (b.slugPath) await deps.removeArtifactImage(b.slugPath).catch((e) => deps.log(`${app.name}: removing the image of build ${b.id}: ${(e as Error).message}`));
    }
    // Its traffic so far is saved under this app, not under a later app of the same name; the rows stay
    // (app_id cleared) so the organization is still billed for it.
    await deps.saveUsage?.();
    await deleteApp(deps.db, app.id);
    // Its certificate rows went with it: the router stops serving them now, not at the next change.
    await pushCertificates(deps).catch((e) => deps.log(`${app.name}: could not update the router's certificates: ${(e as Error).message}`));
    await deps.repos.remove(app.name);
    for (const dir of [deps.paths.slugs(app.name), deps.paths.cache(app.name)]) await rm(dir, { recursive: true, force: true });
    await rm(deps.paths.appLog(app.name), { force: true });
  }));
  await audit(deps.db, { userId: caller.user.id, action: "app:destroy", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
}

/**
 * Memory and CPU limits of the app's processes (enforced by the Docker runtime); they apply to processes
 * started from now on: the next deploy, scale or `ps:restart`. `null` returns to the server default.
 */
export async function setResourceLimits(deps: DeployDeps, caller: Caller, name: string, change: { memory?: string | null; cpus?: string | null }): Promise<{ memoryLimit: number | null; cpuLimit: number | null }> {
  const app = await authorizeApp(deps.db, caller, "ps:scale", name);
  let memoryLimit = app.memoryLimit;
  let cpuLimit = app.cpuLimit;
  if (change.memory !== undefined) {
    memoryLimit = change.memory === null ? null : parseByteSize(change.memory);
    if (memoryLimit === null && change.memory !== null) throw new DeckError("bad_argument", `"${String(change.memory).slice(0, 20)}" is not a memory size like 256m or 1g`);
    if (memoryLimit !== null && memoryLimit < 6 * 1024 ** 2) throw new DeckError("bad_argument", "the memory limit must be at least 6m");
  }
  if (change.cpus !== undefined) {
    cpuLimit = change.cpus === null ? null : Number(change.cpus);
    if (cpuLimit !== null && !(Number.isFinite(cpuLimit) && cpuLimit > 0 && cpuLimit <= 256)) throw new DeckError("bad_argument", `"${String(change.cpus).slice(0, 20)}" is not a number of CPUs like 0.5 or 2`);
  }
  await setAppLimits(deps.db, app.id, { memoryLimit, cpuLimit });
  await audit(deps.db, { userId: caller.user.id, action: "ps:scale", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, memoryLimit, cpuLimit } });
  return { memoryLimit, cpuLimit };
}

/** Chooses how the app is built from now on: a buildpack or `dockerfile`, or `auto` to detect it again. */
export async function setBuilder(deps: DeployDeps, caller: Caller, name: string, choice: string): Promise<string | null> {
  const app = await authorizeApp(deps.db, caller, "config:set", name);
  if (!isBuilderChoice(choice)) throw new DeckError("bad_argument", `"${choice.slice(0, 30)}" is not a builder; use one of ${BUILDER_CHOICES.join(", ")}`);
  const value = choice === "auto" ? null : choice;
  await setAppBuilder(deps.db, app.id, value);
  await audit(deps.db, { userId: caller.user.id, action: "config:set", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, builder: choice } });
  return value;
}

/** The path new releases must answer (status below 500) before they get traffic. */
export async function setHealthCheck(deps: DeployDeps, caller: Caller, name: string, path: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "config:set", name);
  if (!/^\/[\x21-\x7e]{0,200}$/.test(path)) throw new DeckError("bad_argument", `"${path.slice(0, 40)}" is not a URL path like /health`);
  await setHealthCheckPath(deps.db, app.id, path);
  await audit(deps.db, { userId: caller.user.id, action: "config:set", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, healthCheckPath: path } });
}

export interface AppReport {
  app: AppRow;
  url: string;
  release: ReleaseRow | null;
  formation: [string, number][];
  processes: ProcessInfo[];
  /** What the router answers for the app, compared with its live processes. */
  router: RouterStatus;
}

export async function report(deps: DeployDeps, caller: Caller, name: string): Promise<AppReport> {
  const app = await authorizeApp(deps.db, caller, "app:read", name);
  const release = await liveRelease(deps, app);
  const build = release ? await findBuild(deps.db, release.buildId) : null;
  const processes = (await deps.runtime.list(app.name)).filter((p) => p.generation === app.liveDeploymentId);
  const maintenance = app.stopped || app.router.maintenance;
  const upstreams = maintenance ? [] : processes.filter((p) => p.type === "web" && p.port).map(upstreamAddress);
  const view = await deps.router.view?.(app.name);
  return { app, url: appUrl(deps, app.name), release, formation: formationFor(build?.procfile ?? {}, app.formation), processes, router: routerStatusOf(view, { upstreams, maintenance }) };
}
