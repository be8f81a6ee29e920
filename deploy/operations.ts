import { rm } from "node:fs/promises";
import { checkAppName, DeckError, type ProcessInfo } from "../core/index.ts";
import {
  audit, deleteApp, findApp, findBuild, findRelease, findReleaseByVersion, getConfigVars, insertApp,
  insertRelease, listApps, listReleases, listSlugBuilds, saveConfigVars, setAppBuilder, setAppLimits, setFormation, setHealthCheckPath, q,
  type AppRow, type ReleaseRow,
} from "../store/queries/index.ts";
import { BUILDER_CHOICES, isBuilderChoice } from "../buildpacks/index.ts";
import { parseByteSize } from "../config/index.ts";
import { appUrl, routeFor, drainAndStop, formationFor, upstreamAddress, withRouteLock } from "./activate.ts";
import { redeploy } from "./pipeline.ts";
import { routerStatusOf, type RouterStatus } from "./router-status.ts";
import { pushCertificates } from "./certs.ts";
import { authorizeApp, orgForNewApp, type Caller } from "./access.ts";
import type { DeployDeps } from "./deps.ts";

/**
 * The operations users run on apps. SSH commands and the REST API are two faces of these functions:
 * they authorise, change the database first, then the running state, and audit the result.
 */
export type Out = (line: string) => void;

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

// ---------- config ----------
export async function showConfig(deps: DeployDeps, caller: Caller, name: string): Promise<Record<string, string>> {
  const app = await authorizeApp(deps.db, caller, "config:get", name);
  return getConfigVars(deps.db, app.id);
}

const CONFIG_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function parseAssignments(args: string[]): Record<string, string> {
  if (args.length === 0) throw new DeckError("bad_argument", "no KEY=VALUE given; usage: config:set APP KEY=VALUE [KEY=VALUE ...]");
  const out: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(0, eq) : "";
    if (!CONFIG_KEY.test(key)) throw new DeckError("bad_argument", `"${a.split("=")[0].slice(0, 40)}" is not a KEY=VALUE pair with a key of letters, digits and _`);
    if (key === "PORT") throw new DeckError("bad_argument", "PORT is set by deck for each web process and cannot be configured");
    out[key] = a.slice(eq + 1);
  }
  return out;
}

/** Sets or unsets config vars; when the app is live this makes a new release and redeploys it. */
export async function changeConfig(deps: DeployDeps, caller: Caller, name: string, change: { set?: Record<string, string>; unset?: string[] }, out: Out): Promise<{ version: number | null }> {
  const app = await authorizeApp(deps.db, caller, "config:set", name);
  for (const k of change.unset ?? []) if (!CONFIG_KEY.test(k)) throw new DeckError("bad_argument", `"${k.slice(0, 40)}" is not a valid config key`);
  return deps.queue.run(app, "config", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const vars = { ...(await getConfigVars(deps.db, app.id)), ...(change.set ?? {}) };
    for (const k of change.unset ?? []) delete vars[k];
    const keys = [...Object.keys(change.set ?? {}), ...(change.unset ?? [])];
    const audited = () => audit(deps.db, { userId: caller.user.id, action: "config:set", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, keys } });
    const current = await liveRelease(deps, app);
    if (!current) {
      await saveConfigVars(deps.db, app.id, vars);
      await audited();
      out(`-----> Config saved; ${app.name} has no release yet, it applies on the first deploy`);
      return { version: null };
    }
    const what = change.set ? `Set ${Object.keys(change.set).join(", ")}` : `Unset ${(change.unset ?? []).join(", ")}`;
    const rel = await deps.db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: current.buildId, config: vars, commitSha: current.commitSha, description: what, createdBy: caller.user.id }));
    // The config is saved as the release goes live: config and live release never disagree.
    await redeploy(deps, caller, app, "config", rel, true, out, { commit: (tx) => saveConfigVars(tx, app.id, vars), unchanged: "config unchanged" });
    await audited();
    return { version: rel.version };
  });
}

// ---------- releases ----------
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
export async function rollback(deps: DeployDeps, caller: Caller, name: string, rawVersion: string | undefined, out: Out): Promise<{ version: number; target: number }> {
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
    await redeploy(deps, caller, app, "rollback", rel, false, out, { commit: (tx) => saveConfigVars(tx, app.id, target.config), unchanged: "config unchanged" });
    await audit(deps.db, { userId: caller.user.id, action: "release:rollback", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, to: target.version } });
    return { version: rel.version, target: target.version };
  });
}

// ---------- processes ----------
export function parseFormation(args: string[]): Record<string, number> {
  if (args.length === 0) throw new DeckError("bad_argument", "no TYPE=COUNT given; usage: ps:scale APP web=2 [worker=1 ...]");
  const out: Record<string, number> = {};
  for (const a of args) {
    const m = /^([a-z][a-z0-9_-]{0,30})=(\d{1,3})$/.exec(a);
    if (!m) throw new DeckError("bad_argument", `"${a.slice(0, 40)}" is not TYPE=COUNT (for example web=2)`);
    if (Number(m[2]) > 50) throw new DeckError("bad_argument", `at most 50 processes per type (asked for ${m[2]})`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

export async function scale(deps: DeployDeps, caller: Caller, name: string, change: Record<string, number>, out: Out): Promise<Record<string, number>> {
  const app = await authorizeApp(deps.db, caller, "ps:scale", name);
  return deps.queue.run(app, "scale", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const current = await liveRelease(deps, app);
    const build = current ? await findBuild(deps.db, current.buildId) : null;
    if (build?.procfile) {
      for (const t of Object.keys(change)) {
        if (!(t in build.procfile) || t === "release") throw new DeckError("bad_argument", `${app.name} has no process type "${t}" (types: ${Object.keys(build.procfile).filter((x) => x !== "release").join(", ")})`);
      }
    }
    const formation = { ...app.formation, ...change };
    // With a release live, the formation is saved as its new processes go live.
    if (current) await redeploy(deps, caller, { ...app, formation }, "scale", current, false, out, { commit: (tx) => setFormation(tx, app.id, formation), unchanged: "formation unchanged" });
    else await setFormation(deps.db, app.id, formation);
    await audit(deps.db, { userId: caller.user.id, action: "ps:scale", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, formation: change } });
    return formation;
  });
}

export async function restart(deps: DeployDeps, caller: Caller, name: string, out: Out): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "ps:restart", name);
  await deps.queue.run(app, "restart", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const current = await liveRelease(deps, app);
    if (!current) throw new DeckError("no_release", `${app.name} has no live release to restart`);
    await redeploy(deps, caller, app, "restart", current, false, out);
    await audit(deps.db, { userId: caller.user.id, action: "ps:restart", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
  });
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

export { drainAndStop, findRelease };
