import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import net from "node:net";
import { dirname } from "node:path";
import { listenOn } from "../core/index.ts";
import { deployPush, type DeployDeps, type DeployOutcome } from "../deploy/index.ts";
import { forgetKeptCommit, keepPushedCommit } from "./queued-push.ts";
import { parseRefUpdates, planPush } from "./ref-updates.ts";
import type { PushRegistry } from "./push-registry.ts";

interface HookHeader {
  pushId: string;
  refs: string[];
  env: Record<string, string>;
  repoDir: string;
}

/**
 * The server end of the pre-receive hook: reads the hook's header, runs the deploy and writes every
 * output line back as it happens; the last line carries the verdict the hook exits with.
 */
export async function startHookBridge(deps: DeployDeps, pushes: PushRegistry, socketPath: string): Promise<net.Server> {
  await mkdir(dirname(socketPath), { recursive: true });
  await rm(socketPath, { force: true });
  const server = net.createServer((sock) => handleHook(deps, pushes, sock));
  await listenOn(server, socketPath);
  // A failed accept must not stop deck: it is logged, and the next push connects again.
  server.on("error", (e) => deps.log(`hook socket ${socketPath}: ${e.message}`));
  return server;
}

function handleHook(deps: DeployDeps, pushes: PushRegistry, sock: net.Socket): void {
  let buf = "";
  let started = false;
  let gone = false;
  let pushId = "";
  let done = false;
  sock.on("error", () => undefined);
  sock.on("close", () => {
    gone = true;
    // The hook went away before the verdict (the pusher disconnected): stop the deploy if it can still stop.
    if (!done && pushId) pushes.get(pushId)?.abort.abort(new Error("the pusher disconnected"));
  });
  const send = (line: string) => {
    if (!gone) sock.write(`${line.replace(/\n/g, " ")}\n`);
  };
  const finish = (code: number) => {
    if (done) return;
    done = true;
    if (!gone) sock.end(`\u0000exit:${code}\n`);
  };
  sock.on("data", (chunk) => {
    if (started) return;
    buf += chunk.toString("utf8");
    const nl = buf.indexOf("\n");
    if (nl < 0) {
      if (buf.length > 1 << 20) sock.destroy();
      return;
    }
    started = true;
    let header: HookHeader;
    try {
      header = JSON.parse(buf.slice(0, nl)) as HookHeader;
    } catch {
      send("deck: malformed hook request; push refused");
      return finish(1);
    }
    pushId = String(header.pushId ?? "");
    void runHook(deps, pushes, header, send, () => gone, finish).then(finish, (e: Error) => {
      deps.log(`hook: ${e.stack ?? e.message}`);
      send("deck: internal error while deploying; push refused (details are in the deck server log)");
      finish(1);
    });
  });
}

async function runHook(deps: DeployDeps, pushes: PushRegistry, header: HookHeader, send: (l: string) => void, isGone: () => boolean, finish: (code: number) => void): Promise<number> {
  const session = pushes.get(header.pushId);
  if (!session) {
    send("deck: this push did not come through deck's git server; push refused");
    return 1;
  }
  const plan = planPush(parseRefUpdates(header.refs));
  if (plan.kind === "reject") {
    send(`deck: ${plan.message}`);
    return 1;
  }
  for (const u of plan.ignored) {
    if (u.ref.startsWith("refs/heads/")) send(`-----> Branch ${u.ref.slice(11)} stored, not deployed (deck deploys main, or master)`);
  }
  if (plan.kind === "store-only") return 0;
  session.deployCommit = plan.update.newSha;
  const gitEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(header.env)) if (v) gitEnv[k] = v;
  let reported = false;
  send(`-----> Deploying ${session.app.name} (${plan.update.ref.slice(11)} ${plan.update.newSha.slice(0, 7)})`);
  const outcome = await deployPush(deps, {
    app: session.app, commitSha: plan.update.newSha, user: session.caller.user, repoDir: deps.paths.repo(session.app.name),
    gitEnv, out: send, signal: session.abort.signal,
    stillCurrent: async () => {
      const now = await currentRef(deps.paths.repo(session.app.name), plan.update.ref);
      const expected = /^0{40}$/.test(plan.update.oldSha) ? "" : plan.update.oldSha;
      if (now === expected) return null;
      return `${plan.update.ref.slice(11)} moved to ${now.slice(0, 7) || "nothing"} while this push waited for the deploy ahead of it; fetch, merge and push again`;
    },
    // The verdict goes out while this push still holds the app's slot; the slot is released once git
    // has updated the branch, so a push waiting behind this one checks against the new tip.
    report: (outcome) => {
      reported = true;
      finish(verdict(outcome, send));
    },
    holdSlotUntil: session.finished,
    // A push that has to wait keeps its commit, so a restart of deck meanwhile does not lose it.
    keep: (deploymentId) => keepPushedCommit(deps.paths.repo(session.app.name), gitEnv, plan.update, deploymentId),
  });
  // Over, one way or the other: the commit it kept while it waited is not needed any more. A push
  // interrupted by a restart keeps it: the next start deploys it.
  if (outcome.deploymentId !== undefined && !(!outcome.ok && outcome.code === "interrupted")) {
    forgetKeptCommit(deps.paths.repo(session.app.name), outcome.deploymentId).catch((e: Error) => deps.log(`${session.app.name}: ${e.message}`));
  }
  if (isGone()) return 1;
  return reported ? verdict(outcome) : verdict(outcome, send);
}

function verdict(outcome: DeployOutcome, send?: (l: string) => void): number {
  if (outcome.ok) return 0;
  send?.(`deck: push rejected: ${outcome.message}`);
  return 1;
}

/** The ref's value in the repository itself (not the push quarantine); "" when it does not exist. */
function currentRef(repoDir: string, ref: string): Promise<string> {
  return new Promise((resolve) => {
    execFile("git", ["--git-dir", repoDir, "rev-parse", "--verify", "--quiet", ref], (err, stdout) => resolve(err ? "" : stdout.trim()));
  });
}
