import { rm } from "node:fs/promises";
import { isDeckError } from "../core/index.ts";
import {
  finishBuild, getConfigVars, insertBuild, insertDeployment, insertRelease, listSlugBuilds, markBuildPruned,
  setAppStatus, updateDeployment, findApp, audit, type AppRow, type UserRow,
} from "../store/queries/index.ts";
import { describeOutOfMemory, runInCgroup } from "../builder/index.ts";
import type { BuildResult } from "../core/index.ts";
import { activateRelease, appUrl, markAppFailedIfNew } from "./activate.ts";
import type { Semaphore } from "./app-queue.ts";
import { DeployOutput } from "./app-log.ts";
import { buildRunsOf, openBuildCgroup, protectedBuildIds, type BuildRun } from "./builds.ts";
import type { DeployDeps, DeployOutcome } from "./deps.ts";

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
}

const elapsed = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)}s`;

/** A push of the deploy branch: build the commit, make a release of it, put it live. */
export async function deployPush(deps: DeployDeps, req: PushRequest): Promise<DeployOutcome> {
  // Registered for builds:list, builds:output and builds:cancel until the push is over.
  const runs = buildRunsOf(deps);
  const run = runs.begin(req.app.name, req.commitSha, req.user.email);
  const output = new DeployOutput(deps.db, deps.paths.appLog(req.app.name), (line) => {
    req.out(line);
    run.line(line);
  });
  const t0 = Date.now();
  try {
    const deployed = deps.queue.run(
      req.app.name,
      (pos) => output.line(`-----> Another deploy of ${req.app.name} is running; waiting (position ${pos} in line)`),
      async (): Promise<DeployOutcome> => {
        // Cancelled while it waited: the push has had its answer already.
        if (run.signal.aborted) return { ok: false, message: run.cancelMessage ?? "build cancelled" };
        run.state = "waiting";
        const outcome = await runPush(deps, req, output, t0, run);
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
    );
    // A push cancelled while it waits behind another deploy of the app is rejected at once; its turn
    // in line, when it comes, does nothing.
    const cancelled = run.cancelledWhileQueued.then((message): DeployOutcome => {
      output.error(`-----> Deploy failed: ${message}`);
      return { ok: false, message };
    });
    deployed.catch(() => undefined);
    return await Promise.race([deployed, cancelled]);
  } catch (e) {
    if (isDeckError(e)) return { ok: false, message: e.message };
    throw e;
  } finally {
    runs.end(run);
    await output.flush().catch((e) => deps.log(`build log: ${(e as Error).message}`));
  }
}

async function runPush(deps: DeployDeps, req: PushRequest, output: DeployOutput, t0: number, run: BuildRun): Promise<DeployOutcome> {
  const app = (await findApp(deps.db, req.app.name)) ?? req.app;
  if (req.signal.aborted) return { ok: false, message: "the push was cancelled before its deploy started" };
  const moved = await req.stillCurrent?.();
  if (moved) return { ok: false, message: moved };
  const deployment = await insertDeployment(deps.db, { appId: app.id, kind: "push", commitSha: req.commitSha, createdBy: req.user.id });
  output.attach(deployment.id);
  const fail = async (message: string): Promise<DeployOutcome> => {
    output.error(`-----> Deploy failed: ${message}`);
    await updateDeployment(deps.db, deployment.id, { status: "failed", error: message, finished: true });
    await markAppFailedIfNew(deps, app);
    return { ok: false, message, deploymentId: deployment.id };
  };
  await updateDeployment(deps.db, deployment.id, { status: "building" });
  await setAppStatus(deps.db, app.id, app.liveDeploymentId ? "running" : "deploying");

  // The pusher going away and builds:cancel both stop the build.
  const signal = AbortSignal.any([req.signal, run.signal]);
  const release = await acquireBuildSlot(deps.builds, signal, (pos) => output.line(`-----> Waiting for a build slot (position ${pos} in line)`));
  if (!release) {
    run.finishBuild();
    return fail(run.cancelMessage ?? "the push was cancelled while it waited for a build slot");
  }
  let build;
  const buildStart = Date.now();
  try {
    build = await insertBuild(deps.db, app.id, req.commitSha);
    run.startBuild(build.id);
    const result = await runLimitedBuild(deps, build.id, run, {
      app: app.name, commitSha: req.commitSha, repoDir: req.repoDir, gitEnv: req.gitEnv,
      slugDir: deps.paths.slug(app.name, build.id), cacheDir: deps.paths.cache(app.name),
      env: await getConfigVars(deps.db, app.id), timeoutMs: deps.config.buildTimeout * 1000,
      onLine: output.line, signal, builder: app.builder ?? undefined, sandbox: app.sandbox,
    });
    await updateDeployment(deps.db, deployment.id, { buildTime: Date.now() - buildStart });
    if (!result.ok) {
      await finishBuild(deps.db, build.id, { ok: false });
      return await fail(result.message);
    }
    const cancelled = run.cancelMessage;
    if (cancelled) {
      // Cancelled as the build finished: no release of it.
      await rm(deps.paths.slug(app.name, build.id), { recursive: true, force: true });
      await finishBuild(deps.db, build.id, { ok: false });
      return await fail(cancelled);
    }
    await finishBuild(deps.db, build.id, { ok: true, buildpack: result.buildpack, slugPath: deps.paths.slug(app.name, build.id), sizeBytes: result.sizeBytes, procfile: result.procfile });
    await setAppStatus(deps.db, app.id, app.liveDeploymentId ? "running" : "deploying", result.buildpack);
    build = { ...build, status: "succeeded", buildpack: result.buildpack, slugPath: deps.paths.slug(app.name, build.id), sizeBytes: result.sizeBytes, procfile: result.procfile };
  } finally {
    release();
    run.finishBuild();
  }

  await updateDeployment(deps.db, deployment.id, { status: "deploying" });
  // The release snapshots the config in effect when it was made.
  const config = await getConfigVars(deps.db, app.id);
  const releaseRow = await deps.db.transaction((tx) => insertRelease(tx, {
    appId: app.id, buildId: build.id, config, commitSha: req.commitSha,
    description: `Deploy ${req.commitSha.slice(0, 7)}`, createdBy: req.user.id,
  }));
  output.line(`-----> Releasing v${releaseRow.version}`);
  // A start that ends in an exception (a port taken, the engine gone) fails the deploy like any other.
  const activated = await activateRelease(deps, { app, release: releaseRow, build, deploymentId: deployment.id, runReleasePhase: true, out: output.line, signal: req.signal })
    .catch((e: Error) => ({ ok: false as const, message: e.message }));
  if (!activated.ok) return fail(activated.message);
  output.line(`-----> v${releaseRow.version} deployed in ${elapsed(t0)}: ${appUrl(deps, app.name)}`);
  await pruneSlugs(deps, app).catch((e) => deps.log(`pruning builds of ${app.name}: ${(e as Error).message}`));
  return { ok: true, version: releaseRow.version, url: appUrl(deps, app.name), deploymentId: deployment.id };
}

/** Waits for a build slot unless `signal` aborts first; returns the slot's release, or null when aborted. */
async function acquireBuildSlot(slots: Semaphore, signal: AbortSignal, onWait: (position: number) => void): Promise<(() => void) | null> {
  if (signal.aborted) return null;
  const pending = slots.acquire(onWait);
  let onAbort!: () => void;
  const aborted = new Promise<null>((r) => (onAbort = () => r(null)));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const release = await Promise.race([pending, aborted]);
    // Cancelled in line: the slot, once granted, passes straight on to the next build.
    if (!release) void pending.then((r) => r());
    return release;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Runs the build inside its own cgroup (memory, CPU and process limits) and removes the cgroup after,
 * killing anything the build left behind. A build stopped by the memory limit or by builds:cancel is
 * reported as such rather than as the failed command it was in the middle of.
 */
async function runLimitedBuild(deps: DeployDeps, buildId: number, run: BuildRun, req: Parameters<DeployDeps["build"]>[0]): Promise<BuildResult> {
  const cgroup = await openBuildCgroup(deps, buildId);
  try {
    const result = await runInCgroup(cgroup, () => deps.build(req));
    if (result.ok) return result;
    const cancelled = run.cancelMessage;
    if (result.code === "cancelled" && cancelled) return { ...result, message: cancelled };
    if (result.code !== "cancelled" && result.code !== "timeout" && cgroup && (await cgroup.outOfMemory())) {
      return { ...result, code: "build_failed", message: describeOutOfMemory(cgroup.limits) };
    }
    return result;
  } finally {
    await cgroup?.remove().catch((e) => deps.log(`removing the cgroup of build ${buildId}: ${(e as Error).message}`));
  }
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
