import {
  applySlugEnv, DeckError, EMPTY_SLUG_ENV, type ErrorCode, isDeckError, parseSlugEnv, runnableTypes, SLUG_ENV_FILE, type Procfile, type ProcessInfo, type Route, type RouteSettings, type SlugEnv,
} from "../core/index.ts";
import {
  listDomains, setLiveDeployment, setReleaseStatus, supersedeOtherReleases, setAppStatus, setAppStopped, findApp,
  type AppRow, type BuildRow, type Db, type ReleaseRow,
} from "../store/queries/index.ts";
import { isBuildStepError, readRepoFile } from "../buildpacks/index.ts";
import { appendAppLog, readLogTail } from "./app-log.ts";
import type { DeployDeps } from "./deps.ts";
import { waitHealthy } from "./health-check.ts";

export interface ActivateRequest {
  app: AppRow;
  release: ReleaseRow;
  build: BuildRow;
  deploymentId: number;
  runReleasePhase: boolean;
  out: (line: string) => void;
  signal?: AbortSignal;
  /**
   * Changes that take effect with this release (its config vars, its formation), written in the
   * transaction that makes it live: a release that does not go live leaves them unchanged.
   */
  commit?: (tx: Db) => Promise<void>;
  /**
   * Told as each step begins, so the deployment's state follows (deploy/pipeline.ts). Absent where
   * processes of a release already live are started again (deck restarting after a reboot).
   */
  phase?: (state: ActivatePhase) => Promise<void>;
}

export type ActivatePhase = "releasing" | "starting" | "checking" | "switching" | "draining";

export type ActivateResult = { ok: true } | { ok: false; code: ErrorCode; message: string };

/** Every host an app answers on: its default `APP.DOMAIN` and its custom domains. */
export async function appHosts(deps: DeployDeps, app: AppRow | { id: number; name: string }): Promise<string[]> {
  const custom = await listDomains(deps.db, app.id);
  return [`${app.name}.${deps.config.domain}`, ...custom.map((d) => d.domain)];
}

/** The router settings an app's row asks for; defaults (null/false) are left out of the route. */
export function routeSettings(app: AppRow): RouteSettings {
  const r = app.router;
  const s: RouteSettings = {};
  // A stopped app (ps:stop) shows the maintenance page too.
  if (r.maintenance || app.stopped) s.maintenance = true;
  if (r.rateLimitRps !== null) s.rateLimitRps = r.rateLimitRps;
  if (r.rateLimitBurst !== null) s.rateLimitBurst = r.rateLimitBurst;
  if (r.maxBodyBytes !== null) s.maxBodyBytes = r.maxBodyBytes;
  if (r.redirectHttps) s.redirectHttps = true;
  if (r.hsts) s.hsts = true;
  if (r.throttleBytesPerSecond !== null) s.bandwidthBytesPerSecond = r.throttleBytesPerSecond;
  return s;
}

/** The route the router should hold for an app: its hosts, the given upstreams and its settings. */
export async function routeFor(deps: DeployDeps, app: AppRow, upstreams: string[]): Promise<Route> {
  return { app: app.name, hosts: await appHosts(deps, app), upstreams, settings: routeSettings(app) };
}

/** What the deck server tracks about the router's routes: changes waiting per app, and paused apps. */
export class RouteLocks {
  readonly locks = new Map<string, Promise<void>>();
  /** Apps whose route holds requests for a starting release (see pauseRoute). */
  readonly paused = new Set<string>();
}

function routeState(deps: DeployDeps): RouteLocks {
  return deps.routes;
}

/**
 * Runs `fn` when no other route change for the app is running. A deploy's switch (new upstreams,
 * then the live generation saved) and a refresh (which reads the live generation, then sends the
 * route) would otherwise interleave, and a refresh could send the old release's processes again
 * just after the switch, leaving the route on processes about to be stopped.
 */
export async function withRouteLock<T>(deps: DeployDeps, app: string, fn: () => Promise<T>): Promise<T> {
  const locks = routeState(deps).locks;
  const before = locks.get(app) ?? Promise.resolve();
  const run = before.then(fn);
  const done = run.then(() => undefined, () => undefined);
  locks.set(app, done);
  try {
    return await run;
  } finally {
    if (locks.get(app) === done) locks.delete(app);
  }
}

/**
 * Marks an app's route paused (`on`): with nothing serving it yet, the router holds its requests for
 * the release being started instead of answering 503. Off again at the switch or a failed start.
 */
export async function pauseRoute(deps: DeployDeps, app: AppRow, on: boolean): Promise<void> {
  await withRouteLock(deps, app.name, async () => {
    if (on) routeState(deps).paused.add(app.name);
    else routeState(deps).paused.delete(app.name);
    const route = await routeFor(deps, app, []);
    await deps.router.setRoute(on ? { ...route, settings: { ...route.settings, paused: true } } : route);
  });
}

/**
 * Re-sends an app's route with its current hosts, settings and live web processes (after a domain or
 * setting change). The app is read again under the route lock, so the route follows the release that
 * is live now, even when a deploy switched since the caller read `app`; a paused route stays paused.
 */
export async function refreshRoute(deps: DeployDeps, app: AppRow): Promise<void> {
  await withRouteLock(deps, app.name, async () => {
    const current = await findApp(deps.db, app.name);
    if (current === null) return; // destroyed meanwhile: its route is gone and stays gone
    const live = (await deps.runtime.list(current.name)).filter((p) => p.generation === current.liveDeploymentId && p.type === "web" && p.port);
    const route = await routeFor(deps, current, live.map(upstreamAddress));
    if (live.length === 0 && routeState(deps).paused.has(current.name)) route.settings = { ...route.settings, paused: true };
    await deps.router.setRoute(route);
  });
}

/**
 * Where routers reach a web process: `HOST:PORT` (an IPv6 address in brackets), HOST being the
 * address its port was published on when it started (DECK_UPSTREAM_HOST then; 127.0.0.1 for
 * processes started before deck recorded it). A process keeps its address when the setting changes.
 */
export function upstreamAddress(proc: Pick<ProcessInfo, "port" | "host">): string {
  const host = publishedHost(proc);
  return host.includes(":") ? `[${host}]:${proc.port}` : `${host}:${proc.port}`;
}

/** The address a process's port was published on (127.0.0.1 for processes that recorded none). */
function publishedHost(proc: Pick<ProcessInfo, "host">): string {
  return proc.host ?? "127.0.0.1";
}

export function appUrl(deps: DeployDeps, app: string): string {
  const port = deps.config.httpPort === 80 ? "" : `:${deps.config.httpPort}`;
  return `http://${app}.${deps.config.domain}${port}`;
}

/**
 * The environment every app process gets: config vars over a small base, never deck's own env. What
 * the buildpack asked for (`slugEnv`, e.g. a virtualenv's bin on PATH) sits between the two.
 */
export function processEnv(app: string, release: ReleaseRow, slugPath: string, slugEnv: SlugEnv = EMPTY_SLUG_ENV): Record<string, string> {
  return applySlugEnv({
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: slugPath,
    LANG: "C.UTF-8",
    NODE_ENV: "production",
    DECK_APP: app,
    DECK_RELEASE: `v${release.version}`,
    ...release.config,
  }, slugEnv, slugPath);
}

/** The buildpack's run-time env stored in a slug; slugs built before it existed have none. */
export async function readSlugEnv(slugPath: string): Promise<SlugEnv> {
  // The slug was written by the tenant's build and belongs to its uid: the file is never read through a link.
  let text: string | undefined;
  try {
    text = await readRepoFile(slugPath, SLUG_ENV_FILE);
  } catch (e) {
    if (isBuildStepError(e)) throw new DeckError("bad_slug", `the build's run-time env is unusable: ${e.message}`, undefined, { cause: e });
    throw e;
  }
  if (text === undefined) return EMPTY_SLUG_ENV;
  const parsed = parseSlugEnv(text);
  if (!parsed.ok) throw new DeckError("bad_slug", `the build's run-time env is unusable: ${parsed.message}`);
  return parsed.env;
}

export function formationFor(procfile: Procfile, formation: Record<string, number>): [string, number][] {
  return runnableTypes(procfile).map((t) => [t, formation[t] ?? (t === "web" ? 1 : 0)]);
}

async function lastLogLines(deps: DeployDeps, app: string, label: string, n: number): Promise<string[]> {
  const lines = await readLogTail(deps.paths.appLog(app), 200);
  return lines.filter((l) => l.includes(` app[${label}]: `)).slice(-n).map((l) => l.slice(l.indexOf(": ") + 2));
}

/**
 * Puts a release live, blue-green: run the release phase, start the new processes on fresh ports,
 * wait until every web process is healthy, switch the route atomically, then drain and stop the
 * processes of the previous generation. Until the switch nothing the old release serves is touched;
 * any failure before it stops the new processes and leaves the old ones serving.
 */
export async function activateRelease(deps: DeployDeps, req: ActivateRequest): Promise<ActivateResult> {
  const { app, release, build, deploymentId, out } = req;
  const procfile = build.procfile ?? {};
  const slugPath = build.slugPath;
  if (!slugPath) throw new DeckError("no_slug", `build ${build.id} of ${app.name} has no artifact`);
  const env = processEnv(app.name, release, slugPath, await readSlugEnv(slugPath));
  const logFile = deps.paths.appLog(app.name);
  const started: ProcessInfo[] = [];
  let paused = false;
  const fail = async (message: string, code: ErrorCode = "deploy_failed"): Promise<ActivateResult> => {
    // Best effort: the failure is what the user hears; a step of the clean-up that fails is logged.
    const note = (what: string) => (e: unknown) => deps.log(`${app.name}: after a failed deploy, ${what} failed: ${(e as Error).message}`);
    for (const p of started) await deps.runtime.stop(p.id, deps.config.stopGrace * 1000).catch(note(`stopping ${p.type}.${p.index}`));
    // Requests held for the start now get their 503 at once.
    if (paused) await pauseRoute(deps, app, false).catch(note("releasing held requests"));
    await setReleaseStatus(deps.db, release.id, release.status === "live" ? "live" : "failed").catch(note(`marking v${release.version} failed`));
    return { ok: false, code, message };
  };

  // 1. Release phase (migrations and the like) runs once, before any new process starts.
  if (req.runReleasePhase && procfile.release) {
    await req.phase?.("releasing");
    out(`-----> Running release command: ${procfile.release}`);
    const r = await deps.runtime.runOnce({
      app: app.name, release: release.version, command: procfile.release, cwd: slugPath, env, logFile, sandbox: app.sandbox,
      timeoutMs: deps.config.releaseTimeout * 1000, onLine: (l) => out(`       ${l}`),
    });
    if (r.timedOut) return fail(`release command timed out after ${deps.config.releaseTimeout}s; v${release.version} was not deployed`, "release_command_failed");
    if (r.exitCode !== 0) return fail(`release command failed (exit code ${r.exitCode}); v${release.version} was not deployed`, "release_command_failed");
  }
  if (req.signal?.aborted) return fail("cancelled before the new release started", "cancelled");

  // Steps 2 and 3 can also end in an exception (a port taken, the engine gone): then too the new
  // processes stop and held requests are let go, so the route is not left paused.
  const plan = formationFor(procfile, app.formation);
  const summary = plan.map(([t, n]) => `${t}=${n}`).join(", ") || "none";
  let webs: ProcessInfo[] = [];
  // What runs before this release starts: once here, then the switch needs no second look.
  let before: ProcessInfo[] = [];
  try {
    await req.phase?.("starting");
    before = (await deps.runtime.list(app.name)).filter((p) => p.generation !== deploymentId);
    // 2. Start the new generation on fresh ports. When nothing serves the app yet (a first deploy, a
    // restart after every process died), the router holds its requests until the switch instead of
    // answering 503 (up to DECK_PAUSE_TIMEOUT).
    const serving = before.some((p) => p.type === "web" && p.port && p.state === "running");
    if (!serving) {
      await pauseRoute(deps, app, true);
      paused = true;
    }
    out(`-----> Starting processes (${summary})`);
    for (const [type, count] of plan) {
      for (let index = 1; index <= count; index++) {
        const port = type === "web" ? await deps.allocatePort() : undefined;
        const info = await deps.runtime.start({
          app: app.name, release: release.version, generation: deploymentId, type, index,
          command: procfile[type], cwd: slugPath, env: { ...env, DYNO: `${type}.${index}` }, port, host: deps.config.upstreamHost, logFile,
          memoryBytes: app.memoryLimit ?? undefined, cpus: app.cpuLimit ?? undefined, sandbox: app.sandbox,
        });
        started.push(info);
      }
    }

    // 3. Health check every web process.
    webs = started.filter((p) => p.type === "web" && p.port);
    if (webs.length > 0) await req.phase?.("checking");
    const deadlineMs = deps.config.healthTimeout * 1000;
    const pathToCheck = app.healthCheckPath || "/";
    for (const p of webs) {
      out(`-----> Waiting for web.${p.index} to answer ${pathToCheck} on port ${p.port}`);
      const t0 = Date.now();
      const h = await waitHealthy({
        host: publishedHost(p), port: p.port!, path: pathToCheck, deadlineMs, signal: req.signal,
        stillAlive: async () => {
          const cur = (await deps.runtime.list(app.name)).find((x) => x.id === p.id);
          if (!cur || cur.state === "crashed" || cur.restarts > 0) return `web.${p.index} exited during start-up`;
          return null;
        },
      });
      if (!h.ok) {
        const tail = await lastLogLines(deps, app.name, `web.${p.index}`, 5);
        for (const l of tail) out(`       | ${l}`);
        return fail(`health check failed: ${h.reason}; v${release.version} was not deployed and the previous release keeps serving`, "health_check_failed");
      }
      out(`       web.${p.index} healthy (HTTP ${h.status}) after ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    }
  } catch (e) {
    await fail((e as Error).message);
    throw e;
  }
  if (req.signal?.aborted) return fail("cancelled before the switch", "cancelled");
  await req.phase?.("switching");

  // 4. Switch: from here on the new release serves every new request. The app's row is read again for
  // router settings changed during the build; a release going live brings a stopped app (ps:stop) back.
  // The new route and the new live generation are one step for anyone refreshing the route.
  const switched = await withRouteLock(deps, app.name, async () => {
    const current = (await findApp(deps.db, app.name)) ?? app;
    try {
      await deps.router.setRoute(await routeFor(deps, { ...current, stopped: false }, webs.map(upstreamAddress)));
    } catch (e) {
      deps.log(`${app.name}: the router did not take v${release.version}'s route: ${(e as Error).message}`);
      await restoreRoute(deps, current, before).catch((r) => deps.log(`${app.name}: could not send the previous route again: ${(r as Error).message}`));
      return { ok: false as const, message: switchRefusal(e, release.version), code: isDeckError(e) ? e.code : ("router_unavailable" as const) };
    }
    routeState(deps).paused.delete(app.name);
    await deps.db.transaction(async (tx) => {
      if (current.stopped) await setAppStopped(tx, app.id, false);
      await setReleaseStatus(tx, release.id, "live");
      await supersedeOtherReleases(tx, app.id, release.id);
      await setLiveDeployment(tx, app.id, deploymentId);
      await req.commit?.(tx);
    });
    return { ok: true as const, previous: before };
  });
  if (!switched.ok) return fail(switched.message, switched.code);
  const previous = switched.previous;
  appendAppLog(logFile, "deck[deploy]", `v${release.version} is live (${summary})`);
  out(`-----> Switched traffic to v${release.version}`);

  // 5. Drain the previous generation, then stop it.
  await req.phase?.("draining");
  await drainAndStop(deps, previous);
  return { ok: true };
}

/**
 * After a switch the router did not confirm: it may have saved the new route before it failed to
 * answer, so the route of the processes live before goes back (its control calls retry while its
 * supervisor replaces a dead worker).
 */
async function restoreRoute(deps: DeployDeps, app: AppRow, processes: ProcessInfo[]): Promise<void> {
  const live = processes.filter((p) => p.generation === app.liveDeploymentId && p.type === "web" && p.port);
  const route = await routeFor(deps, app, live.map(upstreamAddress));
  if (live.length === 0 && routeState(deps).paused.has(app.name)) route.settings = { ...route.settings, paused: true };
  await deps.router.setRoute(route);
}

/** One line for the user; a router that does not answer is named without its socket's path. */
function switchRefusal(e: unknown, version: number): string {
  const reason = isDeckError(e) && e.code !== "router_unavailable" ? e.message : "the router is not answering (it restarts within seconds; try again)";
  return `${reason}; v${version} was not deployed and the previous release keeps serving`;
}

export async function drainAndStop(deps: DeployDeps, processes: ProcessInfo[]): Promise<void> {
  const end = Date.now() + deps.config.drainTimeout * 1000;
  // Router nodes must serve the new routes and finish their requests to these processes too.
  const upstreams = processes.filter((p) => p.port).map(upstreamAddress);
  const nodes = deps.router.waitForNodes?.(upstreams, end).catch((e) => deps.log(`waiting for router nodes: ${(e as Error).message}`));
  for (const p of processes) {
    if (p.port) {
      const upstream = upstreamAddress(p);
      while (Date.now() < end) {
        const n = await deps.router.inflight(upstream).catch(() => 0);
        if (n === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  await nodes;
  await Promise.all(processes.map((p) => deps.runtime.stop(p.id, deps.config.stopGrace * 1000).catch((e) => deps.log(`stopping ${p.id}: ${(e as Error).message}`))));
}

export async function markAppFailedIfNew(deps: DeployDeps, app: AppRow): Promise<void> {
  if (app.liveDeploymentId === null) await setAppStatus(deps.db, app.id, "failed");
}
