import { DeckError, processCount } from "../core/index.ts";
import { drainAndStop, redeploy, refreshRoute, type DeployDeps } from "../deploy/index.ts";
import { audit, findApp, findBuild, setAppStopped, setFormation } from "../store/queries/index.ts";
import { listAutoscaleSettings } from "../store/queries/autoscale.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction, type Out } from "./audit.ts";
import { liveRelease } from "./releases.ts";
import { applyOrUndo, reloadApp } from "./route-change.ts";

/** An app's processes: how many of each type run (ps:scale), restarting them, stopping and starting the app. */

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

/**
 * Sets how many processes of each type run. `options.audit: false` for a caller that writes its own
 * audit entry of the change; `options.expect` for autoscaling: once the scale's turn comes, it goes
 * ahead only if the app is the one judged, is not stopped, and still runs `from` processes of the type
 * (a ps:stop or a user's change in between wins). A user cannot scale a type deck autoscales.
 */
export async function scale(deps: DeployDeps, caller: Caller, name: string, change: Record<string, number>, out: Out,
  options: { audit?: boolean; expect?: { appId: number; type: string; from: number } } = {}): Promise<Record<string, number>> {
  const found = await authorizeApp(deps.db, caller, "ps:scale", name);
  if (!options.expect) {
    const autoscaled = (await listAutoscaleSettings(deps.db, found.id)).filter((s) => s.type in change);
    if (autoscaled.length) {
      const s = autoscaled[0]!;
      throw new DeckError("conflict", `${found.name}: ${s.type} autoscales between ${s.min} and ${s.max}; set other bounds with ps:autoscale ${found.name} ${s.type} --min N --max M, or stop it with ps:autoscale:off ${found.name} ${s.type}`);
    }
  }
  return deps.queue.run(found, "scale", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    // The app as it is now: its formation may have changed while this waited its turn.
    const app = await findApp(deps.db, found.name);
    if (!app || app.id !== found.id) throw new DeckError("app_not_found", `app "${found.name}" no longer exists`);
    const expect = options.expect;
    if (expect) {
      if (app.id !== expect.appId) throw new DeckError("conflict", `${app.name} is no longer the app autoscaling judged; not scaled`);
      if (app.stopped) throw new DeckError("conflict", `${app.name} was stopped meanwhile; not scaled`);
      const now = processCount(app.formation, expect.type);
      if (now !== expect.from) throw new DeckError("conflict", `${app.name} runs ${now} ${expect.type} processes now, not ${expect.from}; not scaled`);
    }
    const current = await liveRelease(deps, app);
    const build = current ? await findBuild(deps.db, current.buildId) : null;
    if (build?.procfile) {
      for (const t of Object.keys(change)) {
        if (!(t in build.procfile) || t === "release") throw new DeckError("bad_argument", `${app.name} has no process type "${t}" (types: ${Object.keys(build.procfile).filter((x) => x !== "release").join(", ")})`);
      }
    }
    const formation = { ...app.formation, ...change };
    // With a release live, the formation is saved as its new processes go live.
    if (current) await redeploy(deps, caller.user.id, { ...app, formation }, "scale", current, false, out, { commit: (tx) => setFormation(tx, app.id, formation), unchanged: "formation unchanged" });
    else await setFormation(deps.db, app.id, formation);
    if (options.audit !== false) await audit(deps.db, { userId: caller.user.id, action: "ps:scale", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, formation: change } });
    return formation;
  });
}

export async function restart(deps: DeployDeps, caller: Caller, name: string, out: Out): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "ps:restart", name);
  await deps.queue.run(app, "restart", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const current = await liveRelease(deps, app);
    if (!current) throw new DeckError("no_release", `${app.name} has no live release to restart`);
    await redeploy(deps, caller.user.id, app, "restart", current, false, out);
    await audit(deps.db, { userId: caller.user.id, action: "ps:restart", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
  });
}

// ---------- ps:stop / ps:start ----------
/**
 * Stops every process of the app and keeps it stopped, across deck restarts, until ps:start (or a
 * release going live). The router shows the maintenance page from the moment the app is marked stopped;
 * requests already in flight finish (up to the drain deadline) before the processes are stopped.
 */
export async function stopApp(deps: DeployDeps, caller: Caller, name: string, out: Out): Promise<{ stopped: number }> {
  const app = await authorizeApp(deps.db, caller, "ps:scale", name);
  return deps.queue.run(app, "stop", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    await setAppStopped(deps.db, app.id, true);
    const fresh = await reloadApp(deps, app);
    await applyOrUndo(deps, fresh, () => setAppStopped(deps.db, app.id, false), "the app keeps running");
    const processes = await deps.runtime.list(app.name);
    if (processes.length) out(`-----> Stopping ${processes.map((p) => `${p.type}.${p.index}`).join(", ")}`);
    await drainAndStop(deps, processes);
    await refreshRoute(deps, fresh);
    await recordAction(deps, caller, "ps:stop", app.name, { processes: processes.length });
    return { stopped: processes.length };
  });
}

export type StartOutcome = "started" | "not_stopped" | "no_release";

/** Starts a stopped app's live release again (a new generation of its processes, health-checked). */
export async function startApp(deps: DeployDeps, caller: Caller, name: string, out: Out): Promise<{ outcome: StartOutcome; version: number | null }> {
  const app = await authorizeApp(deps.db, caller, "ps:scale", name);
  return deps.queue.run(app, "start", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const fresh = await reloadApp(deps, app);
    if (!fresh.stopped) return { outcome: "not_stopped" as const, version: null };
    const release = await liveRelease(deps, fresh);
    if (!release) {
      // Nothing to run yet: the app is simply no longer stopped, and its first push starts it.
      await setAppStopped(deps.db, app.id, false);
      await applyOrUndo(deps, await reloadApp(deps, app), () => setAppStopped(deps.db, app.id, true), "the app stays stopped");
      await recordAction(deps, caller, "ps:start", app.name);
      return { outcome: "no_release" as const, version: null };
    }
    // The release going live clears the stopped state; a failed health check leaves the app stopped.
    await redeploy(deps, caller.user.id, fresh, "restart", release, false, out);
    await recordAction(deps, caller, "ps:start", app.name, { release: release.version });
    return { outcome: "started" as const, version: release.version };
  });
}
