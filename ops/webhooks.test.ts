import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startServer, type RunningServer } from "../bin/server.ts";
import { loadConfig } from "../config/index.ts";
import { isDeckError } from "../core/index.ts";
import { configureSecrets } from "../store/secret-box.ts";
import { addMember, findUserById, insertUser, q, sql, type UserRow } from "../store/queries/index.ts";
import { databaseBackends } from "../test/helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "../test/helpers/deck.ts";
import { callerFor } from "./access.ts";
import {
  checkRepoUrl, checkWebhookBranch, configureWebhook, getWebhook, handleWebhook, parseGithubPush, parseGitlabPush,
  redactRepoUrl, verifyGithubSignature, verifyGitlabToken, webhookFetchArgv, type WebhookRequest, type WebhookResult,
} from "./webhooks.ts";

const SHA = "0123456789abcdef0123456789abcdef01234567";

describe("verifyGithubSignature", () => {
  // The worked example from GitHub's "Validating webhook deliveries" page.
  const secret = "It's a Secret to Everybody";
  const body = Buffer.from("Hello, World!");
  const good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

  it("accepts the provider's signature of the exact body", () => {
    assert.equal(verifyGithubSignature(secret, body, good), true);
    assert.equal(verifyGithubSignature(secret, body, good.toUpperCase().replace("SHA256=", "sha256=")), true);
  });
  it("refuses another secret, another body, and a missing header", () => {
    assert.equal(verifyGithubSignature("It's a Secret to Nobody", body, good), false);
    assert.equal(verifyGithubSignature(secret, Buffer.from("Hello, World?"), good), false);
    assert.equal(verifyGithubSignature(secret, body, undefined), false);
    assert.equal(verifyGithubSignature("", body, good), false);
  });
  it("refuses signatures in any other format", () => {
    const hex = good.slice("sha256=".length);
    for (const h of [hex, `sha1=${hex}`, `sha256=${hex.slice(0, 63)}`, `sha256=${hex}00`, `sha256=${hex.slice(0, 63)}g`, "sha256=", ""]) {
      assert.equal(verifyGithubSignature(secret, body, h), false, h);
    }
  });
});

describe("verifyGitlabToken", () => {
  it("accepts only the exact token", () => {
    assert.equal(verifyGitlabToken("gitlab-token-0123456789", "gitlab-token-0123456789"), true);
    assert.equal(verifyGitlabToken("gitlab-token-0123456789", "gitlab-token-0123456788"), false);
    assert.equal(verifyGitlabToken("gitlab-token-0123456789", "gitlab-token-012345678"), false);
    assert.equal(verifyGitlabToken("gitlab-token-0123456789", undefined), false);
    assert.equal(verifyGitlabToken("gitlab-token-0123456789", ""), false);
    assert.equal(verifyGitlabToken("", ""), false);
  });
});

describe("parsing push payloads", () => {
  for (const [name, parse] of [["GitHub", parseGithubPush], ["GitLab", parseGitlabPush]] as const) {
    it(`reads ref and commit from a ${name} push`, () => {
      assert.deepEqual(parse({ ref: "refs/heads/main", after: SHA.toUpperCase(), commits: [] }), { ok: true, value: { ref: "refs/heads/main", branch: "main", after: SHA, deleted: false } });
      assert.deepEqual(parse({ ref: "refs/heads/release/2.x", after: SHA }), { ok: true, value: { ref: "refs/heads/release/2.x", branch: "release/2.x", after: SHA, deleted: false } });
      const tag = parse({ ref: "refs/tags/v1", after: SHA });
      assert.ok(tag.ok && tag.value.branch === null);
      const gone = parse({ ref: "refs/heads/main", after: "0".repeat(40) });
      assert.ok(gone.ok && gone.value.deleted);
    });
    it(`refuses a ${name} push without a valid ref or commit`, () => {
      for (const body of [null, [], "x", {}, { ref: "refs/heads/main" }, { after: SHA }, { ref: "main", after: SHA }, { ref: "refs/heads/main", after: SHA.slice(1) },
        { ref: "refs/heads/main", after: `${SHA.slice(1)}g` }, { ref: "refs/heads/ma in", after: SHA }, { ref: 7, after: SHA }]) {
        const r = parse(body);
        assert.equal(r.ok, false, JSON.stringify(body));
        if (!r.ok) assert.match(r.message, new RegExp(name));
      }
    });
  }
});

describe("webhook settings validation", () => {
  it("accepts remote URLs and marks local paths as local", () => {
    for (const url of ["https://github.com/acme/web.git", "http://git.example.com:8080/acme/web", "ssh://git@github.com/acme/web.git", "ssh://git@[::1]:22/x.git", "git://example.com/web.git", "https://x:tok%2Fen@gitlab.example.com/a/b.git"]) {
      assert.deepEqual(checkRepoUrl(url), { ok: true, value: { url, local: false } }, url);
    }
    for (const url of ["/srv/git/web.git", "file:///srv/git/web.git", "file://localhost/srv/git/web.git"]) {
      assert.deepEqual(checkRepoUrl(url), { ok: true, value: { url, local: true } }, url);
    }
  });
  it("refuses anything git could read as an option, a helper or a shell word", () => {
    for (const url of ["", "-uhttps://x/y", "--upload-pack=touch /tmp/x", "https://x.com/a b", "https://x.com/a\nb", "https://x.com/a\u0000", "ext::sh -c touch% /tmp/pwned",
      "fd::3", "git@github.com:acme/web.git", "ftp://x.com/r.git", "web.git", "./web.git", "ssh://-oProxyCommand=touch%20x/y", "ssh://-oProxyCommand@host/y",
      "ssh://git@host", "file://elsewhere/srv/x.git", "https://", 42]) {
      assert.equal(checkRepoUrl(url).ok, false, String(url));
    }
  });
  it("accepts branch names git accepts and refuses the rest", () => {
    for (const b of ["main", "release/2.x", "feature_a-1"]) assert.deepEqual(checkWebhookBranch(b), { ok: true, value: b });
    for (const b of ["", "-main", "a..b", "a//b", "/main", "main/", "main.lock", "a/.hidden", "ma in", "main~1", "a@{1}", "x".repeat(201)]) {
      assert.equal(checkWebhookBranch(b).ok, false, b);
    }
  });
  it("never shows the password of a repository URL", () => {
    assert.equal(redactRepoUrl("https://deploy:glpat-secret@gitlab.example.com/a/b.git"), "https://deploy:***@gitlab.example.com/a/b.git");
    assert.equal(redactRepoUrl("ssh://git@github.com/a/b.git"), "ssh://git@github.com/a/b.git");
  });
  it("fetches with the URL after --, so it can never be an option", () => {
    assert.deepEqual(webhookFetchArgv("/d/web.git", "-x", SHA).slice(-3), ["--", "-x", SHA]);
    assert.deepEqual(webhookFetchArgv("/d/web.git", "https://h/r.git", SHA).slice(0, 3), ["git", "--git-dir", "/d/web.git"]);
  });
});

// ---------- end to end: a real deck server, a real repository, the router ----------

const backends = await databaseBackends();
const GITHUB_SECRET = "github-secret-0123456789abcdef";
const GITLAB_TOKEN = "gitlab-token-0123456789abcdef";

function githubDelivery(app: string, payload: unknown, opts: { secret?: string; event?: string } = {}): WebhookRequest {
  const rawBody = Buffer.from(JSON.stringify(payload));
  const signature = `sha256=${createHmac("sha256", opts.secret ?? GITHUB_SECRET).update(rawBody).digest("hex")}`;
  return { app, provider: "github", rawBody, headers: { "x-github-event": opts.event ?? "push", "x-hub-signature-256": signature }, sourceIp: "203.0.113.7" };
}

function post(port: number, path: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers: { "content-type": "application/json", "content-length": String(body.length), ...headers } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function rejection(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isDeckError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  assert.fail("expected a DeckError");
}

/** Polls the app through deck's router until its answer starts with `version` (or the deadline passes). */
async function waitForVersion(deck: Deck, app: string, version: string, deadlineMs = 90_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = "";
  while (Date.now() < deadline) {
    const r = await deck.get(app).catch((e: Error) => ({ status: 0, body: e.message }));
    last = `${r.status} ${r.body.trim()}`;
    if (r.status === 200 && r.body.startsWith(`${version} `)) return;
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.fail(`${app} did not answer ${version} through the router; last answer: ${last}`);
}

for (const backend of backends) {
  describe(`webhooks deploy a pushed commit (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let server: RunningServer | undefined;
    let work: string;
    let source: string;
    let remote: string;
    let admin: UserRow;
    const serverLog: string[] = [];
    const app = "hooked";
    const count = async (table: "deployments" | "releases") =>
      Number(await server!.deps.db.oneFirst(q`SELECT count(*) FROM ${sql.identifier([table])} WHERE app_id = (SELECT id FROM apps WHERE name = ${app})`));

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-webhook-"));
      source = await makeRepo(join(work, "source"), nodeApp("v1"));
      remote = join(work, "remote.git");
      execFileSync("git", ["clone", "-q", "--bare", source, remote]);
      deck = await Deck.start({ backend });
      const created = await deck.ssh(`apps:create ${app}`);
      assert.equal(created.code, 0, created.stderr);
      // The deploy pipeline is driven in this process, so the server runs here: stop the one the
      // helper started (its router and apps keep running) and start the same server in-process.
      const child = deck.server!;
      child.kill("SIGTERM");
      if (child.exitCode === null && !child.signalCode) await new Promise((r) => child.once("exit", r));
      const env = deck.env();
      configureSecrets({ dataDir: deck.dataDir, masterKey: env.DECK_MASTER_KEY });
      const config = loadConfig({ env, cwd: deck.dir });
      // A start that cannot bind its API port fails with the reason and leaves nothing of itself
      // listening: its SSH port and hook socket are free for the next start.
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(config.apiPort, config.host, resolve));
      await assert.rejects(startServer(config, (l) => serverLog.push(l)), new RegExp(`port ${config.apiPort} on ${config.host} is already in use`));
      await new Promise((resolve) => squatter.close(resolve));
      const hook = net.connect(join(deck.dataDir, "run", "hooks.sock"));
      await assert.rejects(new Promise((resolve, reject) => hook.once("connect", resolve).once("error", reject)), /ENOENT|ECONNREFUSED/);
      server = await startServer(config, (l) => serverLog.push(l));
      const id = Number(await server.deps.db.oneFirst(q`SELECT id FROM users WHERE email = 'admin@example.com'`));
      admin = (await findUserById(server.deps.db, id))!;
    });
    after(async () => {
      await server?.stop().catch(() => undefined);
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("keeps settings validated, authorised and sealed at rest", async () => {
      const deps = server!.deps;
      const adminCaller = await callerFor(deps.db, admin, "cli");
      assert.equal((await rejection(getWebhook(deps, adminCaller, app))).code, "webhook_not_configured");
      assert.equal((await rejection(configureWebhook(deps, adminCaller, app, { repoUrl: "--upload-pack=touch /tmp/x", githubSecret: GITHUB_SECRET }))).code, "bad_argument");
      assert.equal((await rejection(configureWebhook(deps, adminCaller, app, { repoUrl: remote }))).code, "bad_argument");
      assert.equal((await rejection(configureWebhook(deps, adminCaller, app, { repoUrl: remote, githubSecret: "short" }))).code, "bad_argument");

      // An org admin may configure webhooks, but not read the server's own disk through one.
      const org = Number(await deps.db.oneFirst(q`SELECT org_id FROM apps WHERE name = ${app}`));
      const orgAdmin = await insertUser(deps.db, { email: "ops@example.com", isAdmin: false });
      await addMember(deps.db, org, orgAdmin.id, "admin");
      const opsCaller = await callerFor(deps.db, orgAdmin, "http", "198.51.100.1");
      const local = await rejection(configureWebhook(deps, opsCaller, app, { repoUrl: remote, githubSecret: GITHUB_SECRET }));
      assert.equal(local.code, "forbidden");
      const viewer = await insertUser(deps.db, { email: "viewer@example.com", isAdmin: false });
      await addMember(deps.db, org, viewer.id, "viewer");
      assert.equal((await rejection(configureWebhook(deps, await callerFor(deps.db, viewer, "http"), app, { repoUrl: "https://github.com/acme/web.git", githubSecret: GITHUB_SECRET }))).code, "forbidden");

      const view = await configureWebhook(deps, adminCaller, app, { repoUrl: remote, githubSecret: GITHUB_SECRET, gitlabToken: GITLAB_TOKEN });
      assert.deepEqual({ ...view, updatedAt: "" }, { app, repoUrl: remote, branch: "main", github: true, gitlab: true, configuredBy: admin.id, updatedAt: "" });
      assert.deepEqual(await getWebhook(deps, adminCaller, app), view);
      const raw = await deps.db.one(q`SELECT w.* FROM app_webhooks w JOIN apps a ON a.id = w.app_id WHERE a.name = ${app}`);
      const stored = JSON.stringify(raw);
      for (const secret of [GITHUB_SECRET, GITLAB_TOKEN, remote]) assert.ok(!stored.includes(secret), `${secret} is stored in clear`);
      const audited = await deps.db.any(q`SELECT data FROM audit_log WHERE action = 'webhook:configure' AND target = ${app}`);
      assert.equal(audited.length, 1);
      assert.ok(!JSON.stringify(audited).includes(GITHUB_SECRET));
    });

    it("refuses unsigned and unwanted deliveries without deploying, and audits bad signatures", async () => {
      const deps = server!.deps;
      const sha = execFileSync("git", ["-C", source, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
      const push = { ref: "refs/heads/main", after: sha };

      assert.equal((await rejection(handleWebhook(deps, githubDelivery("nosuchapp", push)))).code, "webhook_not_configured");
      const wrong = await rejection(handleWebhook(deps, githubDelivery(app, push, { secret: "not-the-secret-at-all-0000" })));
      assert.equal(wrong.code, "bad_signature");
      const unsigned = await rejection(handleWebhook(deps, { ...githubDelivery(app, push), headers: { "x-github-event": "push" } }));
      assert.equal(unsigned.code, "bad_signature");
      const gitlab = await rejection(handleWebhook(deps, { app, provider: "gitlab", rawBody: Buffer.from(JSON.stringify(push)), headers: { "x-gitlab-event": "Push Hook", "x-gitlab-token": "wrong" }, sourceIp: "203.0.113.8" }));
      assert.equal(gitlab.code, "bad_signature");
      const denied = await deps.db.any(q`SELECT source_ip, result, data FROM audit_log WHERE action = 'webhook:deliver' AND target = ${app} ORDER BY id`);
      assert.deepEqual(denied.map((r) => [r.source_ip, r.result, (r.data as { provider: string }).provider]), [
        ["203.0.113.7", "denied", "github"], ["203.0.113.7", "denied", "github"], ["203.0.113.8", "denied", "gitlab"],
      ]);

      const ping = await handleWebhook(deps, githubDelivery(app, { zen: "hi", hook_id: 1 }, { event: "ping" }));
      assert.equal(ping.status, 200);
      const other = await handleWebhook(deps, githubDelivery(app, { ref: "refs/heads/feature", after: sha }));
      assert.deepEqual([other.status, other.body.status, (other.body as { code: string }).code], [200, "ignored", "ignored_branch"]);
      const bad = await rejection(handleWebhook(deps, githubDelivery(app, { ref: "refs/heads/main", after: "nope" })));
      assert.equal(bad.code, "bad_payload");
      const notJson = githubDelivery(app, {});
      const rawBody = Buffer.from("{not json");
      notJson.rawBody = rawBody;
      notJson.headers["x-hub-signature-256"] = `sha256=${createHmac("sha256", GITHUB_SECRET).update(rawBody).digest("hex")}`;
      assert.equal((await rejection(handleWebhook(deps, notJson))).code, "bad_payload");
      const missing = await rejection(handleWebhook(deps, githubDelivery(app, { ref: "refs/heads/main", after: "f".repeat(40) })));
      assert.equal(missing.code, "fetch_failed");
      assert.match(missing.message, /fffffff/);

      assert.equal(await count("deployments"), 0);
      const live = await deck.get(app);
      assert.equal(live.status, 503, "the app has no release yet");
    });

    it("deploys the pushed commit from GitHub and then GitLab, like a push", async () => {
      const deps = server!.deps;
      const v1 = execFileSync("git", ["-C", source, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
      const lines: string[] = [];
      const accepted = await handleWebhook(deps, { ...githubDelivery(app, { ref: "refs/heads/main", after: v1, deleted: false }), out: (l) => lines.push(l) });
      assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
      const outcome = await (accepted as Extract<WebhookResult, { status: 202 }>).deploy;
      assert.ok(outcome.ok, `${JSON.stringify(outcome)}\n${lines.join("\n")}`);
      await waitForVersion(deck, app, "v1");
      assert.ok(lines.some((l) => /Node\.js app detected/.test(l)), lines.join("\n"));
      const repoDir = deps.paths.repo(app);
      assert.equal(execFileSync("git", ["--git-dir", repoDir, "rev-parse", "refs/heads/main"], { encoding: "utf8" }).trim(), v1);
      const release = await deps.db.one(q`SELECT r.commit_sha, r.created_by, d.kind FROM releases r JOIN deployments d ON d.release_id = r.id
        WHERE r.app_id = (SELECT id FROM apps WHERE name = ${app}) ORDER BY r.id DESC LIMIT 1`);
      assert.deepEqual([release.commit_sha, Number(release.created_by), release.kind], [v1, admin.id, "push"]);

      const v2 = await commitFiles(source, nodeApp("v2"), "v2");
      execFileSync("git", ["-C", source, "push", "-q", remote, "HEAD:refs/heads/main"]);
      const gitlab = await handleWebhook(deps, {
        app, provider: "gitlab", rawBody: Buffer.from(JSON.stringify({ object_kind: "push", ref: "refs/heads/main", after: v2, checkout_sha: v2 })),
        headers: { "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN }, sourceIp: "203.0.113.9",
      });
      assert.equal(gitlab.status, 202, JSON.stringify(gitlab.body));
      assert.equal((await (gitlab as Extract<WebhookResult, { status: 202 }>).deploy).ok, true);
      await waitForVersion(deck, app, "v2");
      const logs = await deck.ssh(`logs ${app} -n 400`);
      assert.match(logs.stdout + logs.stderr, /GitLab webhook: deploying hooked \(main [0-9a-f]{7}\)/);
      const ok = await deps.db.any(q`SELECT source_ip FROM audit_log WHERE action = 'app:deploy' AND target = ${app} AND result = 'ok' ORDER BY id`);
      assert.deepEqual(ok.map((r) => r.source_ip), ["203.0.113.7", "203.0.113.9"]);
    });

    it("stops deploying once the user who configured it may no longer deploy", async () => {
      const deps = server!.deps;
      const org = Number(await deps.db.oneFirst(q`SELECT org_id FROM apps WHERE name = ${app}`));
      const member = await insertUser(deps.db, { email: "leaver@example.com", isAdmin: false });
      await addMember(deps.db, org, member.id, "admin");
      await configureWebhook(deps, await callerFor(deps.db, member, "http"), app, { repoUrl: "https://example.invalid/acme/web.git" });
      await deps.db.query(q`DELETE FROM organization_members WHERE user_id = ${member.id}`);
      const before = await count("deployments");
      const r = await rejection(handleWebhook(deps, githubDelivery(app, { ref: "refs/heads/main", after: SHA })));
      assert.equal(r.code, "forbidden");
      assert.equal(await count("deployments"), before);
      // Put the local repository back for the HTTP test, as the platform admin.
      await configureWebhook(deps, await callerFor(deps.db, admin, "cli"), app, { repoUrl: remote });
    });

    it("answers GitHub over HTTP: 401 for a bad signature, 202 and a deploy for a good one", async () => {
      const path = `/api/v1/apps/${app}/webhooks/github`;
      const v3 = await commitFiles(source, nodeApp("v3"), "v3");
      execFileSync("git", ["-C", source, "push", "-q", remote, "HEAD:refs/heads/main"]);
      const body = Buffer.from(JSON.stringify({ ref: "refs/heads/main", after: v3 }));
      const deliveries = async () => Number(await server!.deps.db.oneFirst(q`SELECT count(*) FROM audit_log WHERE action = 'webhook:deliver' AND target = ${app}`));
      const deniedBefore = await deliveries();
      const deploysBefore = await count("deployments");

      const bad = await post(deck.ports.api, path, body, { "x-github-event": "push", "x-hub-signature-256": `sha256=${"0".repeat(64)}` });
      assert.equal(bad.status, 401, bad.body);
      assert.equal(JSON.parse(bad.body).error.code, "bad_signature");
      assert.equal(await deliveries(), deniedBefore + 1);
      assert.equal(await count("deployments"), deploysBefore);

      const signature = `sha256=${createHmac("sha256", GITHUB_SECRET).update(body).digest("hex")}`;
      const good = await post(deck.ports.api, path, body, { "x-github-event": "push", "x-hub-signature-256": signature });
      assert.equal(good.status, 202, good.body);
      assert.equal(JSON.parse(good.body).commit, v3);
      await waitForVersion(deck, app, "v3");
    });
  });
}
