import { spawn } from "node:child_process";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { checkAppName, DeckError, isDeckError } from "../core/index.ts";
import { appendAppLog, deployPush, type DeployDeps, type DeployOutcome } from "../deploy/index.ts";
import {
  audit, deleteWebhook, findApp, findUserById, findWebhook, saveWebhook, type AppRow, type WebhookRow,
} from "../store/queries/index.ts";
import { authorizeApp, callerFor, type Caller } from "./access.ts";

/**
 * Git webhooks: a push to GitHub or GitLab deploys the app through the same pipeline as a `git push`
 * to deck. The provider proves the delivery with a shared secret (GitHub: HMAC-SHA256 of the body;
 * GitLab: the token itself); deck then fetches the named commit from the configured repository into
 * the app's bare repository and deploys it.
 *
 * The delivery is answered 202 as soon as the commit is fetched, and the deploy runs in the background:
 * providers give up on a delivery after about ten seconds, far less than a build may take. The deploy
 * shows in `releases`, `logs` and the deployment's build log like a push. It is attributed to (and
 * authorised as) the user who last configured the webhook; when that user may no longer deploy the app,
 * deliveries are refused until someone who may configures it again. The branch in deck's repository is
 * moved to the commit only once it is live, as a push's would be.
 */

export type WebhookProvider = "github" | "gitlab";

/** Deliveries are signed over the whole body, so it must be read whole; push payloads stay far below this. */
export const WEBHOOK_MAX_BODY = 5 * 1024 * 1024;
/** How long fetching the commit may take before the delivery fails. */
export const WEBHOOK_FETCH_TIMEOUT_MS = 120_000;

const PROVIDER_NAME: Record<WebhookProvider, string> = { github: "GitHub", gitlab: "GitLab" };

// ---------- settings ----------

export interface WebhookSettings {
  /** https://, http://, ssh://, git:// URL; platform admins may also give an absolute path or file:// URL. */
  repoUrl: string;
  /** Branch whose pushes deploy; default "main" (or the branch set before). */
  branch?: string;
  /** Omitted: keep the current secret; null: remove it. */
  githubSecret?: string | null;
  gitlabToken?: string | null;
}

/** What the settings look like to users: never the secrets, and the URL without its password. */
export interface WebhookView {
  app: string;
  repoUrl: string;
  branch: string;
  github: boolean;
  gitlab: boolean;
  configuredBy: number | null;
  updatedAt: string;
}

export type WebhookCheck<T> = { ok: true; value: T } | { ok: false; message: string };

const CONTROL_OR_SPACE = /[\s\x00-\x1f\x7f]/;
const URL_SCHEME = /^(https?|ssh|git|file):\/\//i;
const HOST = /^(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])$/;
const SSH_USER = /^[A-Za-z0-9._~][A-Za-z0-9._~-]*$/;

/**
 * Accepts what git can fetch from without a shell or an option ever being read from the URL. Local
 * paths and file:// URLs are allowed (tests and mirrors on the same machine use them) but reported as
 * `local`, because they can read any repository on the server.
 */
export function checkRepoUrl(raw: unknown): WebhookCheck<{ url: string; local: boolean }> {
  if (typeof raw !== "string" || raw.length === 0) return { ok: false, message: "repoUrl is required" };
  if (raw.length > 2048) return { ok: false, message: "repoUrl is longer than 2048 characters" };
  if (CONTROL_OR_SPACE.test(raw)) return { ok: false, message: "repoUrl must not contain spaces or control characters" };
  if (raw.startsWith("-")) return { ok: false, message: "repoUrl must not start with -" };
  if (raw.startsWith("/")) return { ok: true, value: { url: raw, local: true } };
  const usage = "repoUrl must be an https://, http://, ssh:// or git:// URL (e.g. https://github.com/OWNER/REPO.git or ssh://git@github.com/OWNER/REPO.git)";
  if (!URL_SCHEME.test(raw)) return { ok: false, message: usage };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: usage };
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (scheme === "file") {
    if (url.hostname && url.hostname !== "localhost") return { ok: false, message: "a file:// repoUrl names a path on this machine (file:///path/to/repo.git)" };
    return { ok: true, value: { url: raw, local: true } };
  }
  // ssh and git URLs reach a command line (ssh's); a host or user that starts with - would be an option.
  if (!HOST.test(url.hostname)) return { ok: false, message: "repoUrl has no valid host name" };
  if (scheme === "ssh" && url.username && !SSH_USER.test(url.username)) return { ok: false, message: "the user name in an ssh:// repoUrl may only hold letters, digits and . _ ~ -" };
  if (url.pathname.length <= 1) return { ok: false, message: "repoUrl names no repository path" };
  return { ok: true, value: { url: raw, local: false } };
}

/** A branch name git accepts (git check-ref-format --branch), kept to a portable alphabet. */
export function checkWebhookBranch(raw: unknown): WebhookCheck<string> {
  const bad = { ok: false as const, message: "branch must be a git branch name of letters, digits and . _ - / (like main or release/2.x)" };
  if (typeof raw !== "string" || raw.length === 0 || raw.length > 200) return bad;
  if (!/^[A-Za-z0-9._/-]+$/.test(raw) || raw.startsWith("-") || raw.startsWith("/") || raw.endsWith("/") || raw.endsWith(".")) return bad;
  if (raw.includes("..") || raw.includes("//") || raw.endsWith(".lock") || raw.split("/").some((part) => part.startsWith("."))) return bad;
  return { ok: true, value: raw };
}

function checkSecret(raw: unknown, what: string): WebhookCheck<string> {
  if (typeof raw !== "string" || !/^[\x21-\x7e]{16,512}$/.test(raw)) {
    return { ok: false, message: `${what} must be 16 to 512 printable characters without spaces (e.g. the output of: openssl rand -hex 32)` };
  }
  return { ok: true, value: raw };
}

/** The URL as shown to users and in messages: a password or token in it becomes ***. */
export function redactRepoUrl(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@]*?):[^/@]*@/i, "$1:***@");
}

function view(app: AppRow, w: WebhookRow): WebhookView {
  return { app: app.name, repoUrl: redactRepoUrl(w.repoUrl), branch: w.branch, github: w.githubSecret !== null, gitlab: w.gitlabToken !== null, configuredBy: w.configuredBy, updatedAt: w.updatedAt };
}

function must<T>(c: WebhookCheck<T>): T {
  if (!c.ok) throw new DeckError("bad_argument", c.message);
  return c.value;
}

/** Sets an app's webhook (needs config:set). Deliveries then deploy as `caller`. */
export async function configureWebhook(deps: DeployDeps, caller: Caller, appName: string, settings: WebhookSettings): Promise<WebhookView> {
  const app = await authorizeApp(deps.db, caller, "config:set", appName);
  const repo = must(checkRepoUrl(settings.repoUrl));
  if (repo.local && !caller.actor.isAdmin) {
    throw new DeckError("forbidden", "permission denied: only platform admins may deploy from a path on the deck server; use an https:// or ssh:// repoUrl");
  }
  const before = await findWebhook(deps.db, app.id);
  const branch = must(checkWebhookBranch(settings.branch ?? before?.branch ?? "main"));
  const secret = (given: string | null | undefined, previous: string | null | undefined, what: string) =>
    given === undefined ? previous ?? null : given === null ? null : must(checkSecret(given, what));
  const githubSecret = secret(settings.githubSecret, before?.githubSecret, "githubSecret");
  const gitlabToken = secret(settings.gitlabToken, before?.gitlabToken, "gitlabToken");
  if (githubSecret === null && gitlabToken === null) {
    throw new DeckError("bad_argument", "give a githubSecret or a gitlabToken: deck only deploys deliveries signed with one");
  }
  const row = await saveWebhook(deps.db, { appId: app.id, repoUrl: repo.url, branch, githubSecret, gitlabToken, configuredBy: caller.user.id });
  await audit(deps.db, {
    userId: caller.user.id, action: "webhook:configure", target: app.name, sourceIp: caller.sourceIp, result: "ok",
    data: { via: caller.via, repoUrl: redactRepoUrl(repo.url), branch, github: githubSecret !== null, gitlab: gitlabToken !== null },
  });
  return view(app, row);
}

/** An app's webhook settings (needs config:get); DeckError webhook_not_configured when there are none. */
export async function getWebhook(deps: DeployDeps, caller: Caller, appName: string): Promise<WebhookView> {
  const app = await authorizeApp(deps.db, caller, "config:get", appName);
  const row = await findWebhook(deps.db, app.id);
  if (!row) throw notConfigured(app.name);
  return view(app, row);
}

/** Removes an app's webhook (needs config:set); later deliveries answer 404. */
export async function removeWebhook(deps: DeployDeps, caller: Caller, appName: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "config:set", appName);
  if (!(await deleteWebhook(deps.db, app.id))) throw notConfigured(app.name);
  await audit(deps.db, { userId: caller.user.id, action: "webhook:remove", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
}

function notConfigured(app: string, provider?: WebhookProvider): DeckError {
  const which = provider ? `${PROVIDER_NAME[provider]} webhook` : "webhook";
  return new DeckError("webhook_not_configured", `no ${which} is configured for app "${app}"`);
}

// ---------- verifying deliveries ----------

/** GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant time. */
export function verifyGithubSignature(secret: string, rawBody: Buffer, header: string | undefined): boolean {
  if (!secret || typeof header !== "string") return false;
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!m) return false;
  const expected = createHmac("sha256", secret).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(m[1]!, "hex"));
}

/** GitLab's `X-Gitlab-Token`: the configured token itself; compared as digests so length leaks nothing. */
export function verifyGitlabToken(token: string, header: string | undefined): boolean {
  if (!token || typeof header !== "string" || header.length === 0) return false;
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(token), digest(header));
}

// ---------- parsing push events ----------

export interface WebhookPush {
  ref: string;
  /** The branch for refs/heads/ refs; null for tags and other refs. */
  branch: string | null;
  /** The commit the ref now points at (40 hex). */
  after: string;
  /** The push deleted the ref (after is all zeros). */
  deleted: boolean;
}

const SHA = /^[0-9a-f]{40}$/;
const REF = /^refs\/[\x21-\x7e]{1,1000}$/;

function parsePush(body: unknown, provider: WebhookProvider): WebhookCheck<WebhookPush> {
  const name = PROVIDER_NAME[provider];
  if (typeof body !== "object" || body === null || Array.isArray(body)) return { ok: false, message: `the ${name} push payload is not a JSON object` };
  const { ref, after } = body as { ref?: unknown; after?: unknown };
  if (typeof ref !== "string" || !REF.test(ref)) return { ok: false, message: `the ${name} push payload has no valid "ref" (refs/heads/BRANCH)` };
  if (typeof after !== "string" || !SHA.test(after.toLowerCase())) return { ok: false, message: `the ${name} push payload has no valid "after" commit (40 hex digits)` };
  const sha = after.toLowerCase();
  const deleted = /^0{40}$/.test(sha) || (body as { deleted?: unknown }).deleted === true;
  return { ok: true, value: { ref, branch: ref.startsWith("refs/heads/") ? ref.slice("refs/heads/".length) : null, after: sha, deleted } };
}

/** A GitHub `push` event payload (https://docs.github.com/webhooks/webhook-events-and-payloads#push). */
export function parseGithubPush(body: unknown): WebhookCheck<WebhookPush> {
  return parsePush(body, "github");
}

/** A GitLab `Push Hook` payload (https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events). */
export function parseGitlabPush(body: unknown): WebhookCheck<WebhookPush> {
  return parsePush(body, "gitlab");
}

// ---------- git ----------

/** argv that fetches `what` (a commit or a ref) from the URL into the bare repository, objects only. */
export function webhookFetchArgv(repoDir: string, url: string, what: string): string[] {
  // `--` ends the options, so neither the URL nor `what` can ever be read as one.
  return ["git", "--git-dir", repoDir, "-c", "protocol.ext.allow=never", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--", url, what];
}

export function webhookUpdateBranchArgv(repoDir: string, branch: string, sha: string): string[] {
  return ["git", "--git-dir", repoDir, "update-ref", "-m", `deck: webhook deploy of ${sha}`, `refs/heads/${branch}`, sha];
}

function hasCommitArgv(repoDir: string, sha: string): string[] {
  return ["git", "--git-dir", repoDir, "cat-file", "-e", `${sha}^{commit}`];
}

interface GitRun { ok: boolean; stderr: string; timedOut: boolean }

/** Runs git without a shell and never waiting on a prompt; on timeout its whole process group is killed. */
function runGit(argv: string[], timeoutMs: number): Promise<GitRun> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv;
    const env = { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND ?? "ssh -o BatchMode=yes" };
    const child = spawn(cmd!, args, { env, stdio: ["ignore", "ignore", "pipe"], detached: true });
    let stderr = "";
    let timedOut = false;
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += c.toString("utf8");
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ ok: false, stderr: e.message, timedOut });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0 && !timedOut, stderr, timedOut });
    });
  });
}

/** git's last complaint, as one line without credentials. */
function gitComplaint(run: GitRun, url?: string): string {
  let line = run.stderr.split("\n").map((l) => l.trim()).filter(Boolean).pop() ?? "git failed";
  if (url) line = line.split(url).join(redactRepoUrl(url));
  return line.replace(/(:\/\/[^/@\s:]*):[^@/\s]*@/g, "$1:***@").replace(/^(fatal|error): /, "").slice(0, 300);
}

/**
 * Brings the commit into the app's repository. Servers that refuse to serve a commit by id (protocol
 * v0 without uploadpack.allowReachableSHA1InWant) still serve the branch, which holds the commit.
 */
async function fetchCommit(repoDir: string, url: string, branch: string, sha: string, timeoutMs: number): Promise<WebhookCheck<null>> {
  const deadline = Date.now() + timeoutMs;
  const bySha = await runGit(webhookFetchArgv(repoDir, url, sha), timeoutMs);
  let failed: GitRun | null = null;
  if (!bySha.ok) {
    const remaining = deadline - Date.now();
    const byBranch = bySha.timedOut || remaining <= 0 ? bySha : await runGit(webhookFetchArgv(repoDir, url, `refs/heads/${branch}`), remaining);
    if (!byBranch.ok) failed = byBranch.timedOut ? byBranch : bySha;
  }
  if (failed) {
    const why = failed.timedOut ? `it took longer than ${Math.round(timeoutMs / 1000)}s` : gitComplaint(failed, url);
    return { ok: false, message: `could not fetch ${sha.slice(0, 7)} from ${redactRepoUrl(url)}: ${why}` };
  }
  if (!(await runGit(hasCommitArgv(repoDir, sha), 30_000)).ok) {
    return { ok: false, message: `${redactRepoUrl(url)} has no commit ${sha.slice(0, 7)} on ${branch}` };
  }
  return { ok: true, value: null };
}

// ---------- handling a delivery ----------

export interface WebhookRequest {
  app: string;
  provider: WebhookProvider;
  /** The body exactly as received: the signature is over these bytes. */
  rawBody: Buffer;
  /** Request headers; names are matched case-insensitively. */
  headers: Record<string, string | string[] | undefined>;
  sourceIp?: string | null;
  /** Gets every deploy line (they also go to the app log and the deployment's build log). */
  out?: (line: string) => void;
  /** Stops the background deploy if it has not switched traffic yet (e.g. on server shutdown). */
  signal?: AbortSignal;
  fetchTimeoutMs?: number;
}

export type WebhookResult =
  | {
      status: 202;
      body: { status: "accepted"; app: string; branch: string; commit: string; message: string };
      /** Settles with the deploy's outcome; never rejects. */
      deploy: Promise<DeployOutcome>;
    }
  | { status: 200; body: { status: "ok" | "ignored"; code: "ping" | "ignored_event" | "ignored_branch" | "branch_deleted"; message: string } };

function header(headers: WebhookRequest["headers"], name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    // A repeated header is ambiguous: which copy was signed? Treat it as absent.
    if (k.toLowerCase() === name) return typeof v === "string" ? v : undefined;
  }
  return undefined;
}

/**
 * One delivery to `POST /api/v1/apps/:app/webhooks/:provider`. Answers 202 once the pushed commit is
 * in deck's repository (the deploy continues in the background), 200 for pings and for pushes deck does
 * not deploy; throws DeckError `webhook_not_configured` (404), `bad_signature` (401, audited),
 * `bad_payload` (400), `forbidden` (403: the configuring user may no longer deploy) or `fetch_failed`
 * (502: the repository could not be read).
 */
export async function handleWebhook(deps: DeployDeps, req: WebhookRequest): Promise<WebhookResult> {
  const name = PROVIDER_NAME[req.provider];
  const check = checkAppName(req.app);
  const app = check.ok ? await findApp(deps.db, check.name) : null;
  const hook = app ? await findWebhook(deps.db, app.id) : null;
  const secret = req.provider === "github" ? hook?.githubSecret : hook?.gitlabToken;
  // The same answer for a missing app as for an app without this webhook.
  if (!app || !hook || !secret) {
    throw check.ok ? notConfigured(check.name, req.provider) : new DeckError("webhook_not_configured", `no ${name} webhook is configured for that app`);
  }

  const signed = req.provider === "github"
    ? verifyGithubSignature(secret, req.rawBody, header(req.headers, "x-hub-signature-256"))
    : verifyGitlabToken(secret, header(req.headers, "x-gitlab-token"));
  if (!signed) {
    const missing = header(req.headers, req.provider === "github" ? "x-hub-signature-256" : "x-gitlab-token") === undefined;
    await audit(deps.db, {
      userId: null, action: "webhook:deliver", target: app.name, sourceIp: req.sourceIp, result: "denied",
      data: { via: "webhook", provider: req.provider, reason: missing ? "no signature" : "signature does not match" },
    });
    const what = req.provider === "github" ? "X-Hub-Signature-256 signature" : "X-Gitlab-Token";
    throw new DeckError("bad_signature", `the ${what} is ${missing ? "missing" : "wrong"}; set the webhook's secret to the one configured in deck`);
  }

  const event = header(req.headers, req.provider === "github" ? "x-github-event" : "x-gitlab-event");
  if (req.provider === "github" && event === "ping") return { status: 200, body: { status: "ok", code: "ping", message: `deck received the ping for ${app.name}` } };
  const pushEvent = req.provider === "github" ? "push" : "Push Hook";
  if (event === undefined) throw new DeckError("bad_payload", `the delivery has no ${req.provider === "github" ? "X-GitHub-Event" : "X-Gitlab-Event"} header`);
  if (event !== pushEvent) return { status: 200, body: { status: "ignored", code: "ignored_event", message: `deck deploys on ${pushEvent} events; ${event.slice(0, 60)} ignored` } };

  let json: unknown;
  try {
    json = JSON.parse(req.rawBody.toString("utf8"));
  } catch {
    throw new DeckError("bad_payload", `the ${name} delivery body is not JSON`);
  }
  const parsed = req.provider === "github" ? parseGithubPush(json) : parseGitlabPush(json);
  if (!parsed.ok) throw new DeckError("bad_payload", parsed.message);
  const push = parsed.value;
  if (push.branch !== hook.branch) {
    return { status: 200, body: { status: "ignored", code: "ignored_branch", message: `${push.ref.slice(0, 200)} is not ${hook.branch}, the branch ${app.name} deploys from; not deployed` } };
  }
  if (push.deleted) return { status: 200, body: { status: "ignored", code: "branch_deleted", message: `${hook.branch} was deleted; the live release of ${app.name} keeps running` } };

  const caller = await deployingUser(deps, hook, app, req.sourceIp);
  const repoDir = await deps.repos.ensure(app.name);
  const fetched = await fetchCommit(repoDir, hook.repoUrl, hook.branch, push.after, req.fetchTimeoutMs ?? WEBHOOK_FETCH_TIMEOUT_MS);
  const auditData = { via: "webhook", provider: req.provider, branch: hook.branch, commit: push.after };
  if (!fetched.ok) {
    await audit(deps.db, { userId: caller.user.id, action: "app:deploy", target: app.name, sourceIp: req.sourceIp, result: "failed", data: { ...auditData, reason: fetched.message } });
    throw new DeckError("fetch_failed", fetched.message);
  }
  await audit(deps.db, { userId: caller.user.id, action: "app:deploy", target: app.name, sourceIp: req.sourceIp, result: "ok", data: auditData });

  const deploy = deployInBackground(deps, { app, caller, repoDir, branch: hook.branch, sha: push.after, provider: req.provider, out: req.out, signal: req.signal });
  return {
    status: 202,
    body: { status: "accepted", app: app.name, branch: hook.branch, commit: push.after, message: `deploying ${hook.branch} ${push.after.slice(0, 7)}; follow it with: logs ${app.name} -t` },
    deploy,
  };
}

/** The user the deploy runs as: whoever configured the webhook, if they may still deploy the app. */
async function deployingUser(deps: DeployDeps, hook: WebhookRow, app: AppRow, sourceIp?: string | null): Promise<Caller> {
  const again = `configure the webhook of ${app.name} again as a user who may deploy it`;
  const user = hook.configuredBy === null ? null : await findUserById(deps.db, hook.configuredBy);
  if (!user) throw new DeckError("forbidden", `the user who configured this webhook no longer exists; ${again}`);
  const caller = await callerFor(deps.db, user, "http", sourceIp);
  try {
    await authorizeApp(deps.db, caller, "app:deploy", app.name);
  } catch (e) {
    if (!isDeckError(e)) throw e;
    throw new DeckError("forbidden", `the user who configured this webhook may no longer deploy ${app.name}; ${again}`, {}, { cause: e });
  }
  return caller;
}

interface BackgroundDeploy {
  app: AppRow;
  caller: Caller;
  repoDir: string;
  branch: string;
  sha: string;
  provider: WebhookProvider;
  out?: (line: string) => void;
  signal?: AbortSignal;
}

function deployInBackground(deps: DeployDeps, d: BackgroundDeploy): Promise<DeployOutcome> {
  const out = d.out ?? (() => undefined);
  const first = `-----> ${PROVIDER_NAME[d.provider]} webhook: deploying ${d.app.name} (${d.branch} ${d.sha.slice(0, 7)})`;
  out(first);
  appendAppLog(deps.paths.appLog(d.app.name), "deck[build]", first);
  // The slot stays held until the branch has moved, so a push waiting behind this deploy sees the new tip.
  let releaseSlot!: () => void;
  const branchMoved = new Promise<void>((resolve) => (releaseSlot = resolve));
  const run = deployPush(deps, {
    app: d.app, commitSha: d.sha, user: d.caller.user, repoDir: d.repoDir, gitEnv: {}, out,
    signal: d.signal ?? new AbortController().signal,
    report: (outcome) => {
      const move = outcome.ok ? runGit(webhookUpdateBranchArgv(d.repoDir, d.branch, d.sha), 30_000) : Promise.resolve(null);
      void move.then((r) => {
        if (r && !r.ok) deps.log(`webhook deploy of ${d.app.name}: could not move ${d.branch} to ${d.sha.slice(0, 7)}: ${gitComplaint(r)}`);
      }).finally(releaseSlot);
    },
    holdSlotUntil: branchMoved,
  });
  return run.then(
    (outcome) => {
      deps.log(`webhook deploy of ${d.app.name} ${d.sha.slice(0, 7)}: ${outcome.ok ? `v${outcome.version} is live` : `failed: ${outcome.message}`}`);
      return outcome;
    },
    (e: Error) => {
      deps.log(`webhook deploy of ${d.app.name} ${d.sha.slice(0, 7)}: ${e.stack ?? e.message}`);
      return { ok: false as const, code: "internal" as const, message: "internal error while deploying (details are in the deck server log)" };
    },
  );
}
