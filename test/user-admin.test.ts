import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import ssh2 from "ssh2";
import { addUser, apiClient, deckDatabaseUrl, gitAs, queryDeckDatabase, type Api, type TestUser } from "./helpers/accounts.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

/**
 * A platform admin suspends, unsuspends and deletes a user through a real server: a suspended user
 * is refused at every way in (sign-in, both kinds of token, SSH commands, git over SSH and HTTP)
 * while their app keeps serving; unsuspending lets them in again; deleting needs the email typed
 * again and leaves their app and the audit trail. Then the platform health, for admins only.
 */

// Nothing here depends on how PostgreSQL is run.
const backends = embeddedBackendOnly();

const DEV = "dev@example.com";
const APP = "devapp";
const SUSPENDED = /your account is suspended; ask a platform admin/;
const path = (email: string) => `/users/${encodeURIComponent(email)}`;

/** One SSH connection held open, as a ControlMaster or a long `git push` holds it: commands run on it one after another. */
async function connectSsh(deck: Deck, keyFile: string): Promise<ssh2.Client> {
  const privateKey = await readFile(keyFile);
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.once("ready", () => resolve(client));
    client.once("error", reject);
    client.connect({ host: "127.0.0.1", port: deck.ports.ssh, username: "deck", privateKey, readyTimeout: 20_000 });
  });
}

interface Started {
  /** What the command wrote to standard output so far. */
  stdout(): string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts one command on an open connection. */
function startOn(client: ssh2.Client, command: string): Started {
  let stdout = "";
  let stderr = "";
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    client.exec(command, (err, stream) => {
      if (err) return reject(err);
      let code: number | null = null;
      stream.on("data", (c: Buffer) => (stdout += c));
      stream.stderr.on("data", (c: Buffer) => (stderr += c));
      stream.on("exit", (c: number | null) => (code = c));
      stream.on("close", () => resolve({ code, stdout, stderr }));
    });
  });
  return { stdout: () => stdout, done };
}

const execOn = (client: ssh2.Client, command: string) => startOn(client, command).done;

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const backend of backends) {
  describe(`suspending and deleting users (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let dev: TestUser;
    let repo: string;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-users-"));
      deck = await Deck.start({ backend });
      api = apiClient(deck);
      dev = await addUser(api, work, { email: DEV, org: "default", role: "admin" });
      assert.equal((await api("POST", "/apps", { name: APP }, { token: dev.accessToken })).status, 201);
      repo = await makeRepo(join(work, APP), nodeApp("v1"));
      const push = await gitAs(deck, dev, repo, { op: "push", via: "ssh", app: APP });
      assert.equal(push.code, 0, push.stderr);
      assert.equal((await deck.get(APP)).status, 200);
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    /** Every way the user comes in, as they see it. */
    async function tryEverything() {
      await commitFiles(repo, { "touch.txt": String(Date.now()) }, "touch");
      const [signIn, pat, session, ssh, sshFetch, httpFetch] = await Promise.all([
        api("POST", "/session", { email: DEV, password: dev.password }, { token: null }),
        api("GET", "/users/me", undefined, { token: dev.apiToken }),
        api("GET", "/users/me", undefined, { token: dev.accessToken }),
        deck.ssh("apps:list", { keyFile: dev.keyFile }),
        gitAs(deck, dev, repo, { op: "fetch", via: "ssh", app: APP }),
        gitAs(deck, dev, repo, { op: "fetch", via: "http", app: APP }),
      ]);
      return { signIn, pat, session, ssh, sshFetch, httpFetch };
    }

    it("refuses a suspended user everywhere with one line while their app keeps serving, and lets them in again", async () => {
      const suspend = await api("POST", `${path(DEV)}/suspend`, { reason: "laptop stolen" });
      assert.equal(suspend.status, 200, suspend.text);
      assert.deepEqual(suspend.json.appsStopped, []);

      const refused = await tryEverything();
      assert.equal(refused.signIn.status, 403);
      assert.match(refused.signIn.json.error.message, SUSPENDED);
      assert.equal(refused.pat.status, 403);
      assert.match(refused.pat.json.error.message, SUSPENDED);
      assert.equal(refused.session.status, 403);
      assert.equal(refused.ssh.code, 1);
      assert.equal(refused.ssh.stderr.trim(), "deck: your account is suspended; ask a platform admin");
      assert.notEqual(refused.sshFetch.code, 0);
      assert.match(refused.sshFetch.stderr, SUSPENDED);
      assert.notEqual(refused.httpFetch.code, 0);
      const push = await gitAs(deck, dev, repo, { op: "push", via: "ssh", app: APP });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, SUSPENDED);
      const httpPush = await gitAs(deck, dev, repo, { op: "push", via: "http", app: APP });
      assert.notEqual(httpPush.code, 0);
      assert.match(httpPush.stderr, SUSPENDED);
      assert.equal((await deck.get(APP)).status, 200, "the suspended user's app keeps serving");

      const listed = await api("GET", "/users?limit=100");
      const row = listed.json.items.find((u: { email: string }) => u.email === DEV);
      assert.ok(row.suspendedAt, "GET /users shows the suspension");
      assert.equal(row.suspendReason, "laptop stolen");
      const sshList = await deck.ssh("users:list");
      assert.equal(sshList.code, 0, sshList.stderr);
      assert.match(sshList.stdout, /dev@example\.com\s+suspended \d{4}-\d\d-\d\d: laptop stolen/);

      const unsuspend = await api("POST", `${path(DEV)}/unsuspend`);
      assert.equal(unsuspend.status, 200, unsuspend.text);
      const back = await tryEverything();
      assert.equal(back.signIn.status, 201, back.signIn.text);
      assert.equal(back.pat.status, 200);
      assert.equal(back.session.status, 200);
      assert.equal(back.ssh.code, 0, back.ssh.stderr);
      assert.match(back.ssh.stdout, new RegExp(APP));
      assert.equal(back.sshFetch.code, 0, back.sshFetch.stderr);
      assert.equal(back.httpFetch.code, 0, back.httpFetch.stderr);

      const audit = await queryDeckDatabase(deckDatabaseUrl(deck, backend), "SELECT action, data FROM audit_log WHERE target = $1 ORDER BY id", [`user:${DEV}`]);
      const actions = audit.map((r) => r.action);
      assert.ok(actions.includes("users:suspend") && actions.includes("users:unsuspend"), actions.join(", "));
      assert.ok(audit.some((r) => r.action === "auth:sign-in" && r.data.reason === "account_suspended"), "the refused sign-in is audited");
    });

    it("refuses the next command on an SSH connection opened before the suspension, ends a command still running, and closes the connection", async () => {
      const client = await connectSsh(deck, dev.keyFile);
      const closed = new Promise<void>((r) => client.once("close", () => r()));
      try {
        const first = await execOn(client, "apps:list");
        assert.equal(first.code, 0, first.stderr);
        assert.match(first.stdout, new RegExp(APP));
        // A followed log runs until the client stops it; it has begun once the app's lines so far are shown.
        const following = startOn(client, `logs ${APP} -t`);
        await waitFor("the log to show the app's lines", () => following.stdout().includes("listening on"), 15_000);
        const suspend = await api("POST", `${path(DEV)}/suspend`, { reason: "investigating" });
        assert.equal(suspend.status, 200, suspend.text);

        const next = await execOn(client, "apps:list");
        assert.equal(next.code, 1);
        assert.equal(next.stderr.trim(), "deck: your account is suspended; ask a platform admin");
        assert.equal(next.stdout, "");
        const ended = await Promise.race([following.done, new Promise<null>((r) => setTimeout(() => r(null), 40_000))]);
        assert.ok(ended, "the followed log ends once the suspension is noticed");
        assert.equal(ended.code, 1);
        assert.match(ended.stderr, SUSPENDED);
        const gone = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
        assert.ok(gone, "the connection is closed");
      } finally {
        client.end();
        assert.equal((await api("POST", `${path(DEV)}/unsuspend`)).status, 200);
      }
    });

    it("refuses the next command on an SSH connection whose key was revoked meanwhile", async () => {
      const holder = await addUser(api, work, { email: "keyholder@example.com", org: "default", role: "member" });
      const client = await connectSsh(deck, holder.keyFile);
      try {
        const first = await execOn(client, "apps:list");
        assert.equal(first.code, 0, first.stderr);
        const revoke = await api("POST", `${path("keyholder@example.com")}/credentials/revoke`);
        assert.equal(revoke.status, 200, revoke.text);
        const next = await execOn(client, "apps:list");
        assert.equal(next.code, 1);
        assert.equal(next.stderr.trim(), "deck: the SSH key this connection signed in with was removed; connect with a key deck knows");
      } finally {
        client.end();
      }
    });

    it("suspends over SSH with --stop-apps, which stops the apps the user created", async () => {
      const r = await deck.ssh(`users:suspend ${DEV} --reason "left the company" --stop-apps`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /suspended dev@example\.com/);
      assert.match(r.stdout, new RegExp(`stopped ${APP}`));
      assert.equal((await deck.get(APP)).status, 503, "a stopped app shows the maintenance page");
      const again = await deck.ssh(`users:unsuspend ${DEV}`);
      assert.equal(again.code, 0, again.stderr);
      const start = await deck.ssh(`ps:start ${APP}`);
      assert.equal(start.code, 0, start.stderr);
      assert.equal((await deck.get(APP)).status, 200);
    });

    it("keeps admins from suspending or deleting themselves", async () => {
      const self = await api("POST", `${path("admin@example.com")}/suspend`, {});
      assert.equal(self.status, 409);
      assert.match(self.json.error.message, /cannot suspend your own account/);
      const del = await deck.ssh("users:delete admin@example.com --confirm admin@example.com");
      assert.equal(del.code, 1);
      assert.match(del.stderr, /cannot delete your own account/);
    });

    it("deletes a user only with the email typed again; their app and the audit trail stay", async () => {
      const wrong = await api("DELETE", `${path(DEV)}?confirm=${encodeURIComponent("dev@example.org")}`);
      assert.equal(wrong.status, 400);
      assert.equal(wrong.json.error.message, "this deletes dev@example.com; run again with --confirm dev@example.com");
      const missing = await deck.ssh(`users:delete ${DEV}`);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /this deletes dev@example\.com; run again with --confirm dev@example\.com/);

      const ok = await api("DELETE", `${path(DEV)}?confirm=${encodeURIComponent(DEV)}`);
      assert.equal(ok.status, 200, ok.text);
      const signIn = await api("POST", "/session", { email: DEV, password: dev.password }, { token: null });
      assert.equal(signIn.status, 401);
      assert.equal((await api("GET", "/users/me", undefined, { token: dev.apiToken })).status, 401);
      const ssh = await deck.ssh("apps:list", { keyFile: dev.keyFile });
      assert.notEqual(ssh.code, 0);
      assert.equal((await deck.get(APP)).status, 200, "the deleted user's app keeps serving");
      assert.equal((await api("GET", `/apps/${APP}`)).status, 200);

      const db = deckDatabaseUrl(deck, backend);
      const rows = await queryDeckDatabase(db, "SELECT a.action, a.user_id, u.email FROM audit_log a LEFT JOIN users u ON u.id = a.user_id WHERE a.target = $1 ORDER BY a.id", [`user:${DEV}`]);
      const deletion = rows.find((r) => r.action === "users:delete");
      assert.equal(deletion?.email, "admin@example.com", "the deletion is audited with who did it");
      const own = await queryDeckDatabase(db, "SELECT count(*)::int AS n FROM audit_log WHERE user_id = $1", [dev.id]);
      assert.equal(own[0].n, 0);
      const kept = await queryDeckDatabase(db, "SELECT count(*)::int AS n FROM audit_log WHERE user_id IS NULL AND action = 'auth:sign-in' AND target = $1 AND result = 'ok'", [`user:${DEV}`]);
      assert.ok(kept[0].n > 0, "the deleted user's own audit rows stay, without the user");
    });

    it("shows the platform health to admins only", async () => {
      const health = await api("GET", "/health/platform");
      assert.equal(health.status, 200, health.text);
      const names = health.json.services.map((s: { name: string }) => s.name);
      assert.deepEqual(names, ["api", "database", "router", "builders"]);
      assert.equal(health.json.services[1].up, true);
      assert.equal(health.json.services[2].up, true, "the server's own router answers");
      assert.ok(health.json.host.cpus > 0 && health.json.host.diskTotal > 0);
      assert.deepEqual(Object.keys(health.json.buildQueue).sort(), ["running", "waiting"]);
      assert.equal(typeof health.json.alertsFiring, "number");
      const other = await addUser(api, work, { email: "viewer@example.com", org: "default", role: "viewer", sshKey: false });
      const refused = await api("GET", "/health/platform", undefined, { token: other.apiToken });
      assert.equal(refused.status, 403);
    });
  });
}
