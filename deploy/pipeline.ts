import { rm } from "node:fs/promises";
import { DeckError, isDeckError, type BuildResult, type ErrorCode } from "../core/index.ts";
import {
  audit, buildCacheKey, deploymentStatus, finishBuild, findApp, findBuild, getConfigVars, insertBuild, insertDeployment, insertRelease, listSlugBuilds, markBuildPruned, setAppStatus, setDeploymentRequest,
  type AppRow, type QueuedPushRequest, type ReleaseRow, type UserRow,
} from "../store/queries/index.ts";
import { activateRelease, appUrl, markAppFailedIfNew, type ActivateRequest } from "./activate.ts";
import { DeployOutput } from "./app-log.ts";
import { buildInCgroup } from "../builder/index.ts";
import { protectedBuildIds, type BuildRun } from "./build-runs.ts";
import { isFinal, transition, type DeployKind, type DeployState, type TransitionDetails } from "./deploy-state.ts";
import type { DeployDeps, DeployOutcome } from "./deps.ts";

/**
 * The deploy pipeline, one file for every way a release goes live: a push (over git or a webhook)
 * builds first; a config change, scale, restart or rollback makes or reuses a release. Both then run
 * the same steps (deploy/activate.ts) and move the deployment through the states of deploy-state.ts.
 * Every failure ends as a typed result with a code; only the SSH and API faces turn it into an error.
 */

/** A deployment under way: its row's id and the state it is in, changed only by `move`. */
export class Deployment {
  constructor(private readonly deps: Pick<DeployDeps, "db" | "events">, readonly id: number, readonly app: string, readonly kind: DeployKind, public state: DeployState = "queued") {}

  static async create(deps: Pick<DeployDeps, "db" | "events">, d: { app: AppRow; kind: DeployKind; commitSha?: string | null; releaseId?: number | null; createdBy: number | null }): Promise<Deployment> {
    const row = await insertDeployment(deps.db, { appId: d.app.id, kind: d.kind, commitSha: d.commitSha, releaseId: d.releaseId, createdBy: d.createdBy });
    return new Deployment(deps, row.id, d.app.name, d.kind);
  }

  async move(to: DeployState, details?: TransitionDetails): Promise<void> {
    await transition(this.deps.db, this.deps.events, this, to, details);
  }

  /**
   * Ends the deployment unsuccessfully unless it has ended already (a switch refused ends it as failed
   * itself, and a deck server's sweep of deployments no server works on may have just ended it).
   */
  async end(to: "failed" | "cancelled" | "interrupted", code: ErrorCode, message: string): Promise<void> {
    if (isFinal(this.state)) return;
    try {
      await this.move(to, { code, message });
    } catch (e) {
      const now = await deploymentStatus(this.deps.db, this.id).catch(() => null);
      if (now === null || !isFinal(now as DeployState)) throw e;
      this.state = now as DeployState;
    }
  }
}

export interface PushRequest {
  app: AppRow;
  commitSha: string;
  user: UserRow;
  repoDir: string;
  gitEnv: Record<string, string>;
  out: (line: string) => void;
  /** Aborted when the pusher goes away; the deploy stops if it has not switched yet. */
  signal: AbortSignal;
  /**
   * Checked once the push holds the app's deploy slot: a reason to refuse when the branch moved while
   * the push waited (git would refuse the ref update after the deploy, leaving code live that is not
   * on the branch).
   */
  stillCurrent?: () => Promise<string | null>;
  /**
   * Called with the outcome while the push still holds the deploy slot; the slot is then held until
   * `holdSlotUntil` settles (git has finished updating the branch), so the next push in line sees it.
   */
  report?: (outcome: DeployOutcome) => void;
  holdSlotUntil?: Promise<unknown>;
  /**
   * Called once if the push has to wait in line: keeps its commit in the repository beyond the push
   * (git discards a refused push's objects) and says how to finish it, so that a restart of the server
   * deploys it rather than forgetting it. Absent: a restart interrupts the waiting push.
   */
  keep?: (deploymentId: number) => Promise<QueuedPushRequest>;
  /** A queued push resumed after a restart: its deployment row already exists. */
  resume?: Deployment;
  /** Called once the push has its place in the app's line. */
  onEnqueued?: () => void;
}

const elapsed = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)}s`;

/** A push of the deploy branch: build the commit, make a release of it, put it live. */
export async function deployPush(deps: DeployDeps, req: PushRequest): Promise<DeployOutcome> {
  // Registered for builds:list, builds:output and builds:cancel until the push is over.
  const run = deps.runs.begin(req.app.name, req.commitSha, req.user.email);
  const output = new DeployOutput(deps.db, deps.paths.appLog(req.app.name), (line) => {
    req.out(line);
    run.line(line);
  });
  const t0 = Date.now();
  // The deployment exists from the moment the push arrives: it shows as queued while it waits, and a
  // restart marks it interrupted instead of forgetting it.
  const deployment = req.resume ?? (await Deployment.create(deps, { app: req.app, kind: "push", commitSha: req.commitSha, createdBy: req.user.id }));
  output.attach(deployment.id);
  run.deploymentId = deployment.id;
  // The pusher going away and builds:cancel both stop the push, in line or building.
  const signal = AbortSignal.any([req.signal, run.signal]);
  let kept: Promise<boolean> | undefined;
  const keep = () => {
    kept ??= req.keep
      ? req.keep(deployment.id).then((request) => setDeploymentRequest(deps.db, deployment.id, request)).then(() => true, (e: Error) => {
          deps.log(`${req.app.name}: could not keep the commit of waiting push ${deployment.id} (a restart interrupts it): ${e.message}`);
          return false;
        })
      : Promise.resolve(false);
    return kept;
  };
  try {
    return await deps.queue.run(
      req.app, "push",
      (pos) => {
        void keep();
        output.line(`-----> Another deploy of ${req.app.name} is running; waiting (position ${pos} in line)`);
      },
      async (): Promise<DeployOutcome> => {
        run.state = "waiting";
        const outcome = await runPush(deps, req, { deployment, output, t0, run, signal });
        await audit(deps.db, {
          userId: req.user.id, action: "deploy:finish", target: req.app.name, result: outcome.ok ? "ok" : "failed",
          data: { commit: req.commitSha, ...(outcome.ok ? { release: outcome.version } : { reason: outcome.message.slice(0, 300) }) },
        }).catch((e) => deps.log(`audit: ${(e as Error).message}`));
        await output.flush().catch((e) => deps.log(`build log: ${(e as Error).message}`));
        if (req.report) {
          req.report(outcome);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([req.holdSlotUntil, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
          clearTimeout(timer);
        }
        return outcome;
      },
      signal,
      { deploymentId: deployment.id, onEnqueued: req.onEnqueued, keepPlace: keep },
    );
  } catch (e) {
    // The server is stopping while the push waits: one that kept its commit keeps its place and is
    // deployed by the next start; its pusher hears so before the connection goes.
    if (isDeckError(e) && e.code === "interrupted" && deps.queue.stopping && (await keep())) {
      const message = `deck is restarting; this push keeps its place in line and deploys once deck is back (builds:list ${req.app.name} shows it)`;
      output.line(`-----> ${message}`);
      return { ok: false, code: "interrupted", message, deploymentId: deployment.id };
    }
    // Refused at the door (DECK_DEPLOY_QUEUE=refuse), or cancelled while it waited in line.
    const cancelled = run.cancelMessage ?? (req.signal.aborted ? "the push was cancelled before its deploy started" : null);
    if (cancelled === null && !isDeckError(e)) {
      await deployment.end("failed", "internal", "internal error; see the deck server log").catch((x) => deps.log(`deployment ${deployment.id}: ${(x as Error).message}`));
      throw e;
    }
    const code: ErrorCode = cancelled !== null ? "cancelled" : (e as DeckError).code;
    const message = cancelled ?? (e as DeckError).message;
    await deployment.end(cancelled !== null ? "cancelled" : "failed", code, message);
    output.error(`-----> Deploy failed: ${message}`);
    return { ok: false, code, message, deploymentId: deployment.id };
  } finally {
    deps.runs.end(run);
    // A keep still under way finishes first, so that dropping the kept commit afterwards is final.
    await kept;
    await output.flush().catch((e) => deps.log(`build log: ${(e as Error).message}`));
  }
}

interface PushContext {
  deployment: Deployment;
  output: DeployOutput;
  t0: number;
  run: BuildRun;
  signal: AbortSignal;
}

/** How a build failure is recorded: its typed code, and whether it was a cancel rather than a failure. */
function buildFailure(result: Extract<BuildResult, { ok: false }>, outOfMemory: boolean): { code: ErrorCode; state: "failed" | "cancelled" } {
  if (result.code === "cancelled") return { code: "cancelled", state: "cancelled" };
  if (outOfMemory) return { code: "out_of_memory", state: "failed" };
  return { code: result.code, state: "failed" };
}

async function runPush(deps: DeployDeps, req: PushRequest, ctx: PushContext): Promise<DeployOutcome> {
  const { deployment, output, run, signal } = ctx;
  const app = (await findApp(deps.db, req.app.name)) ?? req.app;
  const fail = async (code: ErrorCode, message: string, state: "failed" | "cancelled" = "failed"): Promise<DeployOutcome> => {
    output.error(`-----> Deploy failed: ${message}`);
    await deployment.end(state, code, message);
    await markAppFailedIfNew(deps, app);
    return { ok: false, code, message, deploymentId: deployment.id };
  };
  if (signal.aborted) return fail("cancelled", run.cancelMessage ?? "the push was cancelled before its deploy started", "cancelled");
  const moved = await req.stillCurrent?.();
  if (moved) return fail("branch_moved", moved);
  const refused = await deps.admitBuild?.(app);
  if (refused) return fail("quota_exceeded", refused);
  await setAppStatus(deps.db, app.id, app.liveDeploymentId ? "running" : "deploying");

  const slot = await deps.builds.acquire(
    deployment.id,
    (pos, note) => output.line(`-----> Waiting for a build slot (position ${pos} in line)${note ? `; ${note}` : ""}`),
    signal,
    {
      job: {
        app: app.name, appId: app.id, commitSha: req.commitSha, builder: app.builder ?? undefined, sandbox: app.sandbox, runtime: deps.config.runtime,
        timeoutMs: deps.config.buildTimeout * 1000, cacheKey: await buildCacheKey(deps.db, app.id),
      },
      repoDir: req.repoDir, gitEnv: req.gitEnv, commitSha: req.commitSha, onLine: output.line, loadImage: deps.loadImage, hasImage: deps.hasImage,
    },
  );
  if (!slot) {
    run.finishBuild();
    return fail("cancelled", run.cancelMessage ?? "the push was cancelled while it waited for a build slot", "cancelled");
  }
  let build;
  let buildTimeMs: number;
  const buildStart = Date.now();
  try {
    await deployment.move("building");
    build = await insertBuild(deps.db, app.id, req.commitSha, deployment.id);
    run.startBuild(build.id);
    const slugDir = deps.paths.slug(app.name, build.id);
    let built: { result: BuildResult; outOfMemory: boolean };
    if (slot.where === "here") {
      built = await runLimitedBuild(deps, build.id, run, {
        app: app.name, commitSha: req.commitSha, repoDir: req.repoDir, gitEnv: req.gitEnv,
        slugDir, cacheDir: deps.paths.cache(app.name),
        env: await getConfigVars(deps.db, app.id), timeoutMs: deps.config.buildTimeout * 1000,
        onLine: output.line, signal, builder: app.builder ?? undefined, sandbox: app.sandbox,
      });
    } else {
      output.line(`-----> Building on builder node ${slot.builder}`);
      slot.build.ready(slugDir);
      const result = await deps.builds.remoteResult(slot, signal, deps.config.buildTimeout * 1000);
      const cancelled = result.ok ? null : result.code === "cancelled" ? run.cancelMessage : null;
      built = { result: cancelled && !result.ok ? { ...result, message: cancelled } : result, outOfMemory: result.ok ? false : result.outOfMemory === true };
    }
    const { result, outOfMemory } = built;
    buildTimeMs = Date.now() - buildStart;
    if (!result.ok) {
      await rm(slugDir, { recursive: true, force: true });
      await finishBuild(deps.db, build.id, { ok: false });
      const failure = buildFailure(result, outOfMemory);
      return await fail(failure.code, result.message, failure.state);
    }
    const cancelled = run.cancelMessage;
    if (cancelled) {
      // Cancelled as the build finished: no release of it.
      await rm(slugDir, { recursive: true, force: true });
      await finishBuild(deps.db, build.id, { ok: false });
      return await fail("cancelled", cancelled, "cancelled");
    }
    await finishBuild(deps.db, build.id, { ok: true, buildpack: result.buildpack, slugPath: slugDir, sizeBytes: result.sizeBytes, procfile: result.procfile });
    await setAppStatus(deps.db, app.id, app.liveDeploymentId ? "running" : "deploying", result.buildpack);
    build = { ...build, status: "succeeded", buildpack: result.buildpack, slugPath: slugDir, sizeBytes: result.sizeBytes, procfile: result.procfile };
  } finally {
    await slot.release();
    run.finishBuild();
  }

  // The release snapshots the config in effect when it was made.
  const config = await getConfigVars(deps.db, app.id);
  const releaseRow = await deps.db.transaction((tx) => insertRelease(tx, {
    appId: app.id, buildId: build.id, config, commitSha: req.commitSha,
    description: `Deploy ${req.commitSha.slice(0, 7)}`, createdBy: req.user.id,
  }));
  output.line(`-----> Releasing v${releaseRow.version}`);
  const delivered = await deliverRelease(deps, deployment, { app, release: releaseRow, build, runReleasePhase: true, out: output.line, signal: req.signal }, { buildTimeMs });
  if (!delivered.ok) return fail(delivered.code, delivered.message);
  output.line(`-----> v${releaseRow.version} deployed in ${elapsed(ctx.t0)}: ${appUrl(deps, app.name)}`);
  await pruneSlugs(deps, app).catch((e) => deps.log(`pruning builds of ${app.name}: ${(e as Error).message}`));
  return { ok: true, version: releaseRow.version, url: appUrl(deps, app.name), deploymentId: deployment.id };
}

type Delivery = { ok: true } | { ok: false; code: ErrorCode; message: string };

/**
 * Puts a release live for a deployment (activate.ts's steps), moving the deployment through its states;
 * an exception on the way (a port taken, the engine gone) fails the deployment like any other failure.
 */
async function deliverRelease(deps: DeployDeps, deployment: Deployment, req: Omit<ActivateRequest, "deploymentId" | "phase">, first: TransitionDetails = {}): Promise<Delivery> {
  let details: TransitionDetails | undefined = { ...first, releaseId: req.release.id };
  const phase = async (state: DeployState) => {
    await deployment.move(state, details);
    details = undefined;
  };
  try {
    const r = await activateRelease(deps, { ...req, deploymentId: deployment.id, phase });
    if (r.ok) {
      await deployment.move("succeeded");
      return { ok: true };
    }
    return r;
  } catch (e) {
    // The release went live before the failure (while the old processes drained): the deploy happened.
    if (deployment.state === "draining") {
      deps.log(`deploy of ${deployment.app} (deployment ${deployment.id}) is live but failed while the previous release drained: ${(e as Error).stack ?? e}`);
      await deployment.move("succeeded").catch((x) => deps.log(`deployment ${deployment.id}: ${(x as Error).message}`));
      return { ok: true };
    }
    if (isDeckError(e)) return { ok: false, code: e.code, message: e.message };
    // Not the tenant's to read (paths, engine output): the server log has it.
    deps.log(`deploy of ${deployment.app} (deployment ${deployment.id}): ${(e as Error).stack ?? e}`);
    return { ok: false, code: "internal", message: `internal error while deploying (deployment ${deployment.id}; the details are in the deck server log)` };
  }
}

/** A build on this server, in its own cgroup; a build stopped by builds:cancel is reported with its message. */
async function runLimitedBuild(deps: DeployDeps, buildId: number, run: BuildRun, req: Parameters<DeployDeps["build"]>[0]): Promise<{ result: BuildResult; outOfMemory: boolean }> {
  // The server's pid keeps names apart when several deck servers share a machine (tests do).
  const limits = { memoryBytes: deps.config.buildMemory, cpus: deps.config.buildCpus };
  const built = await buildInCgroup(`build-${buildId}-${process.pid}`, limits, deps.log, () => deps.build(req));
  const cancelled = run.cancelMessage;
  if (!built.result.ok && built.result.code === "cancelled" && cancelled) return { result: { ...built.result, message: cancelled }, outOfMemory: false };
  return built;
}

/**
 * Keeps the newest `keepReleases` artifacts, and whatever their age those of the live release and of
 * the release `rollback` would go back to.
 */
export async function pruneSlugs(deps: DeployDeps, app: AppRow): Promise<void> {
  const builds = await listSlugBuilds(deps.db, app.id);
  const keep = new Set([...builds.slice(0, deps.config.keepReleases).map((b) => b.id), ...(await protectedBuildIds(deps.db, app.id))]);
  for (const b of builds) {
    if (keep.has(b.id) || !b.slugPath) continue;
    await deps.removeArtifactImage?.(b.slugPath).catch((e) => deps.log(`removing the image of build ${b.id}: ${(e as Error).message}`));
    await rm(b.slugPath, { recursive: true, force: true });
    await markBuildPruned(deps.db, b.id);
  }
}

export interface RedeployOptions {
  /** Saved in the transaction that makes the release live (see ActivateRequest.commit). */
  commit?: ActivateRequest["commit"];
  /** Appended to the error when the release does not go live, e.g. "config unchanged". */
  unchanged?: string;
}

/**
 * A new generation of processes for `release` (blue-green), for a config change, scale, restart or
 * rollback; called inside the app's queue slot, the deployment recorded as made by the user `createdBy`.
 * Its failure is the SSH and API faces' error.
 */
export async function redeploy(deps: DeployDeps, createdBy: number, app: AppRow, kind: Exclude<DeployKind, "push">, release: ReleaseRow, runReleasePhase: boolean, out: (line: string) => void, options: RedeployOptions = {}): Promise<void> {
  const output = new DeployOutput(deps.db, deps.paths.appLog(app.name), out);
  const deployment = await Deployment.create(deps, { app, kind, commitSha: release.commitSha, releaseId: release.id, createdBy });
  output.attach(deployment.id);
  await deps.queue.attach(app.id, deployment.id);
  try {
    const build = await findBuild(deps.db, release.buildId);
    let r: Delivery;
    if (!build) r = { ok: false, code: "no_build", message: `release v${release.version} has no build` };
    else {
      const fresh = (await findApp(deps.db, app.name)) ?? app;
      r = await deliverRelease(deps, deployment, { app: { ...fresh, formation: app.formation }, release, build, runReleasePhase, out: output.line, commit: options.commit });
    }
    if (!r.ok) {
      await deployment.end("failed", r.code, r.message);
      throw new DeckError("deploy_failed", options.unchanged ? `${r.message}; ${options.unchanged}` : r.message, { cause: r.code });
    }
    output.line(`-----> v${release.version} live: ${appUrl(deps, app.name)}`);
  } finally {
    await output.flush().catch((e) => deps.log(`deploy log of ${app.name}: ${(e as Error).message}`));
  }
}
