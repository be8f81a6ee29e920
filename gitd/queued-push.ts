import { spawn } from "node:child_process";
import { deployPush, Deployment, type DeployDeps } from "../deploy/index.ts";
import { findApp, findUserById, listApps, listResumablePushes, type QueuedPushRequest } from "../store/queries/index.ts";

/**
 * Pushes that wait in line survive a restart of the deck server. While a push waits, its objects sit
 * in git's quarantine, which git discards when the push does not complete; so the first time a push has
 * to wait, its objects are copied into the repository proper and its commit kept under
 * `refs/deck/queued/DEPLOYMENT`. A server that stops while the push waits tells the pusher so; the next
 * start deploys the push in its turn and then moves the branch itself, from the value the push expected
 * (a branch that moved meanwhile refuses it, as the push would have been).
 */

export function keepRefFor(deploymentId: number): string {
  return `refs/deck/queued/${deploymentId}`;
}

interface GitRun { code: number; stdout: Buffer; stderr: string }

/** Runs git without a shell; `input` is written to its stdin. */
function git(args: string[], env: Record<string, string>, input?: Buffer | string): Promise<GitRun> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { env: { ...process.env, GIT_TERMINAL_PROMPT: "0", ...env }, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length < 16_384) stderr += c.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: stderr.trim() }));
    child.stdin.on("error", () => {
      // git exits before reading all of its input when it fails: its exit code says so.
    });
    child.stdin.end(input ?? "");
  });
}

function check(run: GitRun, what: string): GitRun {
  if (run.code !== 0) throw new Error(`${what} failed: ${run.stderr.split("\n").pop() || `exit code ${run.code}`}`);
  return run;
}

/**
 * Copies what the push brought (only visible through its quarantine, `quarantineEnv`) into the
 * repository as a pack, and points the keep ref at the commit.
 */
export async function keepPushedCommit(repoDir: string, quarantineEnv: Record<string, string>, update: { ref: string; oldSha: string; newSha: string }, deploymentId: number): Promise<QueuedPushRequest> {
  if (!/^[0-9a-f]{40}$/.test(update.newSha)) throw new Error(`"${update.newSha.slice(0, 50)}" is not a commit id`);
  const inQuarantine = { GIT_DIR: repoDir, ...quarantineEnv };
  const objects = check(await git(["rev-list", "--objects", update.newSha, "--not", "--all"], inQuarantine), "listing the pushed objects").stdout;
  if (objects.length > 0) {
    const pack = check(await git(["pack-objects", "--stdout"], inQuarantine, objects), "packing the pushed objects").stdout;
    check(await git(["--git-dir", repoDir, "index-pack", "--stdin"], {}, pack), "storing the pushed objects");
  }
  const keepRef = keepRefFor(deploymentId);
  check(await git(["--git-dir", repoDir, "update-ref", keepRef, update.newSha], {}), "keeping the pushed commit");
  return { ref: update.ref, oldSha: update.oldSha, keepRef };
}

/** Drops the commit a waiting push kept once the push is over (deployed or refused); a missing ref is fine. */
export async function forgetKeptCommit(repoDir: string, deploymentId: number): Promise<void> {
  check(await git(["--git-dir", repoDir, "update-ref", "-d", keepRefFor(deploymentId)], {}), "dropping the kept commit");
}

/** The ref's value in the repository; "" when it does not exist. */
async function currentRef(repoDir: string, ref: string): Promise<string> {
  const r = await git(["--git-dir", repoDir, "rev-parse", "--verify", "--quiet", ref], {});
  return r.code === 0 ? r.stdout.toString("utf8").trim() : "";
}

/** Drops kept commits no waiting push needs any more (pushes that ended while deck was down, say). */
async function pruneKeptCommits(deps: DeployDeps, keep: Set<number>): Promise<void> {
  for (const app of await listApps(deps.db, "all")) {
    const repoDir = deps.paths.repo(app.name);
    const listed = await git(["--git-dir", repoDir, "for-each-ref", "--format=%(refname)", "refs/deck/queued/"], {}).catch(() => null);
    // A repository that is not there (yet) keeps nothing.
    if (!listed || listed.code !== 0) continue;
    for (const ref of listed.stdout.toString("utf8").split("\n").filter(Boolean)) {
      const id = Number(ref.slice("refs/deck/queued/".length));
      if (keep.has(id)) continue;
      await git(["--git-dir", repoDir, "update-ref", "-d", ref], {}).then((r) => check(r, `dropping ${ref}`)).catch((e: Error) => deps.log(`${app.name}: ${e.message}`));
    }
  }
}

/**
 * Puts the pushes a stopped server left waiting (`ids`, from reconcile) back in their apps' lines, in
 * their order, before deck takes new work; resolves once they are all in line. Each then deploys in
 * the background and ends like a push: live with its branch moved, or refused with the reason in
 * `builds:list` and the deployment's log.
 */
export async function resumeQueuedPushes(deps: DeployDeps, ids: number[]): Promise<void> {
  await pruneKeptCommits(deps, new Set(ids));
  const wanted = new Set(ids);
  const waiting = (await listResumablePushes(deps.db)).filter((d) => wanted.has(d.id));
  const apps = new Map((await listApps(deps.db, "all")).map((a) => [a.id, a]));
  for (const d of waiting) {
    const app = apps.get(d.appId);
    const deployment = new Deployment(deps, d.id, app?.name ?? String(d.appId), "push", "queued");
    const user = d.createdBy === null ? null : await findUserById(deps.db, d.createdBy);
    const fresh = app ? await findApp(deps.db, app.name) : null;
    if (!fresh || !user || !d.commitSha) {
      await deployment.end("interrupted", "interrupted", "the app or the pusher is gone since this push waited");
      continue;
    }
    const repoDir = deps.paths.repo(fresh.name);
    const commitSha = d.commitSha;
    const expected = /^0{40}$/.test(d.request.oldSha) ? "" : d.request.oldSha;
    const branch = d.request.ref.replace(/^refs\/heads\//, "");
    let moveBranch!: () => void;
    const moved = new Promise<void>((r) => (moveBranch = r));
    let enqueued!: () => void;
    const inLine = new Promise<void>((r) => (enqueued = r));
    deps.log(`${fresh.name}: push ${d.id} (${branch} ${commitSha.slice(0, 7)}) waited in line when deck stopped; it keeps its place`);
    const deployed = deployPush(deps, {
      app: fresh, commitSha, user, repoDir, gitEnv: {}, resume: deployment, onEnqueued: enqueued,
      out: () => undefined, signal: new AbortController().signal,
      // Stopped again before its turn: it keeps its place once more.
      keep: async () => d.request,
      stillCurrent: async () => {
        const now = await currentRef(repoDir, d.request.ref);
        return now === expected ? null : `${branch} moved to ${now.slice(0, 7) || "nothing"} while this push waited for deck to restart; fetch, merge and push again`;
      },
      report: (o) => {
        // As git would have after the hook said yes: the branch moves only if it still holds what the push expected.
        const update = o.ok ? git(["--git-dir", repoDir, "update-ref", "-m", `deck: push ${d.id} deployed after a restart`, d.request.ref, commitSha, expected], {}) : Promise.resolve(null);
        void update.then((r) => {
          if (r && r.code !== 0) deps.log(`${fresh.name}: push ${d.id} is live but ${branch} could not be moved to it: ${r.stderr}`);
        }, (e: Error) => deps.log(`${fresh.name}: moving ${branch} after push ${d.id}: ${e.message}`)).finally(moveBranch);
      },
      holdSlotUntil: moved,
    });
    void deployed.then(async (outcome) => {
      // deck is stopping again: the push keeps its commit and its place for the next start.
      if (!outcome.ok && outcome.code === "interrupted") return;
      await forgetKeptCommit(repoDir, d.id).catch((e: Error) => deps.log(`${fresh.name}: ${e.message}`));
      deps.log(`${fresh.name}: push ${d.id} ${outcome.ok ? `deployed as v${outcome.version}` : `refused: ${outcome.message}`}`);
    }, (e: Error) => deps.log(`${fresh.name}: resuming push ${d.id}: ${e.stack ?? e.message}`));
    // The next one takes its place only behind this one (new work waits until all are in line).
    await Promise.race([inLine, deployed]);
  }
}
