import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROLE_ACTIONS, ROLES, type Action, type Role } from "../core/policy.ts";
import { addUser, apiClient, gitAs, orgAuditRows, type Api, type ApiAnswer, type TestUser } from "./helpers/accounts.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp, type PushResult } from "./helpers/deck.ts";

/**
 * Every role of an organisation against every SSH command that acts on an app, git push and fetch over
 * SSH and HTTP, and one route of every REST route family, through a real server. What each role may do
 * comes from the policy table (core/policy.ts ROLE_ACTIONS); this file only says which action each
 * operation needs. Then: another organisation's app looks exactly like a missing one, and a role
 * granted on one app opens that app alone.
 */

// One backend is enough: nothing here depends on how PostgreSQL is run (the queue and node suites run both).
const backends = embeddedBackendOnly();

/** The deployed app every role is tried against. */
const APP = "web";
/** A second app of org "default", for the per-app grant. */
const OTHER_APP = "web2";
/** A name no app has. */
const GHOST = "ghost-app";

const allows = (role: Role, action: Action): boolean => ROLE_ACTIONS[role].has(action);

/**
 * SSH commands and the action each needs. `tag` makes names unique per caller (domains, throwaway
 * apps) so that allowed calls of one role never collide with another's.
 */
interface SshOp { action: Action; command(app: string, tag: string): string }
const SSH_OPS: SshOp[] = [
  { action: "config:get", command: (a) => `config:show ${a}` },
  { action: "config:get", command: (a) => `config:get ${a} GREETING` },
  { action: "config:set", command: (a, t) => `config:set ${a} SET_BY_${t.toUpperCase()}=1` },
  { action: "config:set", command: (a, t) => `config:unset ${a} SET_BY_${t.toUpperCase()}` },
  { action: "app:logs", command: (a) => `logs ${a} -n 5` },
  { action: "app:read", command: (a) => `releases ${a}` },
  { action: "release:rollback", command: (a) => `rollback ${a}` },
  { action: "ps:scale", command: (a) => `ps:scale ${a} web=1` },
  { action: "ps:restart", command: (a) => `ps:restart ${a}` },
  { action: "ps:scale", command: (a) => `ps:stop ${a}` },
  { action: "ps:scale", command: (a) => `ps:start ${a}` },
  { action: "app:read", command: (a) => `ps:report ${a}` },
  { action: "router:set", command: (a) => `maintenance:off ${a}` },
  { action: "router:set", command: (a) => `router:set ${a} hsts` },
  { action: "app:read", command: (a) => `maintenance:report ${a}` },
  { action: "app:read", command: (a) => `router:report ${a}` },
  { action: "app:read", command: (a) => `domains:list ${a}` },
  { action: "domains:set", command: (a, t) => `domains:add ${a} ${t}.example.com` },
  { action: "members:manage", command: (a) => `access:list ${a}` },
  { action: "audit:read", command: (a) => `audit ${a}` },
];
/** apps:destroy goes to a throwaway app per caller (see `throwaway`). */
const SSH_DESTROY: SshOp = { action: "app:destroy", command: (a) => `apps:destroy ${a} --confirm ${a}` };

/** One route of every REST route family, and the action it needs. */
interface RestOp { family: string; action: Action; method: string; path(app: string): string; body?(tag: string): unknown }
const REST_OPS: RestOp[] = [
  { family: "apps", action: "app:read", method: "GET", path: (a) => `/apps/${a}` },
  { family: "config", action: "config:set", method: "PATCH", path: (a) => `/apps/${a}/config`, body: (t) => ({ set: { [`API_SET_BY_${t.toUpperCase()}`]: "1" } }) },
  { family: "releases", action: "app:read", method: "GET", path: (a) => `/apps/${a}/releases` },
  { family: "deployments", action: "app:read", method: "GET", path: (a) => `/apps/${a}/deployments` },
  { family: "formation", action: "ps:scale", method: "PATCH", path: (a) => `/apps/${a}/formation`, body: () => ({ web: 1 }) },
  { family: "restart", action: "ps:restart", method: "POST", path: (a) => `/apps/${a}/restart` },
  { family: "stop and start", action: "ps:scale", method: "POST", path: (a) => `/apps/${a}/ps/start` },
  { family: "router", action: "router:set", method: "PATCH", path: (a) => `/apps/${a}/router`, body: () => ({ hsts: null }) },
  { family: "maintenance", action: "router:set", method: "POST", path: (a) => `/apps/${a}/maintenance`, body: () => ({ enabled: false }) },
  { family: "logs", action: "app:logs", method: "GET", path: (a) => `/apps/${a}/logs?lines=5` },
  { family: "domains", action: "domains:set", method: "POST", path: (a) => `/apps/${a}/domains`, body: (t) => ({ domain: `api-${t}.example.com` }) },
  { family: "access", action: "members:manage", method: "GET", path: (a) => `/apps/${a}/access` },
  { family: "audit", action: "audit:read", method: "GET", path: (a) => `/apps/${a}/audit` },
];
const REST_DESTROY: RestOp = { family: "app destroy", action: "app:destroy", method: "DELETE", path: (a) => `/apps/${a}?confirm=${a}` };
/** Org-level routes take the org slug instead of an app name. */
const REST_ORG_OPS: RestOp[] = [
  { family: "org members", action: "members:manage", method: "PUT", path: (o) => `/orgs/${o}/members`, body: () => ({ email: "bystander@example.com", role: "viewer" }) },
  { family: "org audit", action: "audit:read", method: "GET", path: (o) => `/orgs/${o}/audit` },
];

/** git push needs app:deploy, git fetch app:read; pushes go to a branch of their own, which is stored and not deployed. */
const GIT_OPS = [
  { op: "push", via: "ssh", action: "app:deploy" },
  { op: "push", via: "http", action: "app:deploy" },
  { op: "fetch", via: "ssh", action: "app:read" },
  { op: "fetch", via: "http", action: "app:read" },
] as const satisfies readonly { op: "push" | "fetch"; via: "ssh" | "http"; action: Action }[];

const throwaway = (via: "ssh" | "api", tag: string) => `tmp-${via}-${tag}`;

function assertSshDenied(r: PushResult, action: Action, what: string): void {
  assert.equal(r.code, 1, `${what}: exit status\n${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `${what}: one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], new RegExp(`^deck: error \\(forbidden\\): permission denied: ${action} `), what);
  assert.equal(r.stdout, "", `${what}: nothing on stdout`);
}

function assertRestDenied(r: ApiAnswer, action: Action, what: string): void {
  assert.equal(r.status, 403, `${what}: ${r.text}`);
  assert.equal(r.json?.error?.code, "forbidden", `${what}: ${r.text}`);
  assert.match(r.json.error.message, new RegExp(`permission denied: ${action} `), what);
}

/** Replaces an app name or org slug in an answer so two answers about different names can be compared. */
// Each answer has its own request id; everything else must be the same.
const neutral = (text: string, name: string) => text.replaceAll(name, "NAME").replace(/"requestId":"[0-9a-f-]{36}"/g, '"requestId":"ID"');

for (const backend of backends) {
  describe(`access control through the real server (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let repo: string;
    const users = new Map<Role, TestUser>();
    /** Every denial the matrix saw: who, which action; each must be in the audit log. */
    const denials: { email: string; action: Action; what: string }[] = [];

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-access-"));
      deck = await Deck.start({ backend });
      api = apiClient(deck);
      for (const role of ROLES) users.set(role, await addUser(api, work, { email: `${role}-user@example.com`, org: "default", role }));
      assert.equal((await api("POST", "/users", { email: "bystander@example.com", password: "bystander-password-1" })).status, 201);
      // GREETING is set before the first release, so every release (and every rollback target) carries it.
      assert.equal((await api("POST", `/apps`, { name: APP })).status, 201);
      assert.equal((await api("PATCH", `/apps/${APP}/config`, { set: { GREETING: "hello" } })).status, 200);
      repo = await makeRepo(join(work, "web"), nodeApp("v1"));
      const first = await deck.push(repo, APP);
      assert.equal(first.code, 0, first.stderr);
      await commitFiles(repo, nodeApp("v2"), "v2");
      const second = await deck.push(repo, APP);
      assert.equal(second.code, 0, second.stderr);
      assert.equal((await api("POST", "/apps", { name: OTHER_APP })).status, 201);
      for (const tag of [...ROLES, "outsider"]) {
        for (const via of ["ssh", "api"] as const) assert.equal((await api("POST", "/apps", { name: throwaway(via, tag) })).status, 201);
      }
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    for (const role of ROLES) {
      it(`${role}: SSH commands, git and REST routes are allowed exactly as the policy table says`, async () => {
        const user = users.get(role)!;
        const expectations: string[] = [];
        const note = (action: Action, what: string, allowed: boolean) => {
          expectations.push(`${allowed ? "allow" : "deny "} ${action.padEnd(16)} ${what}`);
          if (!allowed) denials.push({ email: user.email, action, what });
        };

        // SSH commands. Reads run together; commands that redeploy queue on the app anyway, so one at a time.
        const ssh = async (op: SshOp, app: string) => {
          const cmd = op.command(app, role);
          const r = await deck.ssh(cmd, { keyFile: user.keyFile });
          const allowed = allows(role, op.action);
          note(op.action, `ssh ${cmd}`, allowed);
          if (allowed) assert.equal(r.code, 0, `${role}: ssh ${cmd} should be allowed:\n${r.stderr}`);
          else assertSshDenied(r, op.action, `${role}: ssh ${cmd}`);
          return r;
        };
        for (const op of SSH_OPS) await ssh(op, APP);
        await ssh(SSH_DESTROY, throwaway("ssh", role));

        // git over SSH and HTTP.
        for (const g of GIT_OPS) {
          const r = await gitAs(deck, user, repo, { op: g.op, via: g.via, app: APP, ref: g.op === "push" ? `refs/heads/by-${role}-${g.via}` : "refs/heads/main" });
          const allowed = allows(role, g.action);
          const what = `git ${g.op} over ${g.via}`;
          note(g.action, what, allowed);
          if (allowed) {
            assert.equal(r.code, 0, `${role}: ${what} should be allowed:\n${r.stderr}`);
          } else {
            assert.notEqual(r.code, 0, `${role}: ${what} should be refused`);
            assert.match(r.stderr, new RegExp(`deck: permission denied: ${g.action} on ${APP}`), `${role}: ${what} names the missing permission:\n${r.stderr}`);
          }
        }

        // One route of every REST route family, with the user's signed-in access token.
        const rest = async (op: RestOp, target: string) => {
          const r = await api(op.method, op.path(target), op.body?.(role), { token: user.accessToken });
          const allowed = allows(role, op.action);
          const what = `${op.method} ${op.path(target)} (${op.family})`;
          note(op.action, what, allowed);
          if (allowed) assert.ok(r.status >= 200 && r.status < 300, `${role}: ${what} should be allowed: ${r.status} ${r.text}`);
          else assertRestDenied(r, op.action, `${role}: ${what}`);
        };
        for (const op of REST_OPS) await rest(op, APP);
        await rest(REST_DESTROY, throwaway("api", role));
        for (const op of REST_ORG_OPS) await rest(op, "default");

        // A denied destroy left the app in place; an allowed one removed it.
        for (const via of ["ssh", "api"] as const) {
          const r = await api("GET", `/apps/${throwaway(via, role)}`);
          assert.equal(r.status, allows(role, "app:destroy") ? 404 : 200, `${role}: ${throwaway(via, role)} after destroy`);
        }
        // Sanity: each role was both allowed and refused something, except the owner who may do everything here.
        assert.ok(expectations.some((e) => e.startsWith("allow")), expectations.join("\n"));
        if (role !== "owner") assert.ok(expectations.some((e) => e.startsWith("deny")), expectations.join("\n"));
      });
    }

    it("tells each role its role on the app in GET /apps/:app, so a client can hide what it would be refused", async () => {
      for (const role of ROLES) {
        const r = await api("GET", `/apps/${APP}`, undefined, { token: users.get(role)!.accessToken });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.role, role, `${role}: ${r.text}`);
      }
    });

    it("records every denial in the organisation's audit log", async () => {
      assert.ok(denials.length > 20, `the matrix saw ${denials.length} denials`);
      const rows = await orgAuditRows(api, "default");
      const denied = rows.filter((r) => r.result === "denied");
      for (const d of denials) {
        assert.ok(denied.some((r) => r.userEmail === d.email && r.action === d.action), `no denied audit row for ${d.email} ${d.action} (${d.what})`);
      }
      // Each row says where the request came from.
      const vias = new Set(denied.map((r) => r.data.via));
      for (const via of ["ssh", "http"]) assert.ok(vias.has(via), `denials via ${via} are audited: ${[...vias].join(", ")}`);
    });

    it("lets an org admin manage members but not demote or remove an owner", async () => {
      const owner = users.get("owner")!;
      const admin = users.get("admin")!;
      const roleOf = async (email: string) => (await api("GET", "/orgs/default/members")).json.items.find((m: { email: string }) => m.email === email)?.role;
      // An owner makes someone an owner; an admin may not undo it, nor remove an owner.
      assert.equal((await api("PUT", "/orgs/default/members", { email: "bystander@example.com", role: "owner" }, { token: owner.accessToken })).status, 200);
      const demote = await api("PUT", "/orgs/default/members", { email: "bystander@example.com", role: "viewer" }, { token: admin.accessToken });
      assertRestDenied(demote, "members:manage", "admin demotes an owner");
      const remove = await api("DELETE", `/orgs/default/members/${owner.email}`, undefined, { token: admin.accessToken });
      assertRestDenied(remove, "members:manage", "admin removes an owner");
      assert.equal(await roleOf("bystander@example.com"), "owner");
      assert.equal(await roleOf(owner.email), "owner");
      const rows = await orgAuditRows(api, "default");
      assert.ok(rows.some((r) => r.userEmail === admin.email && r.result === "denied" && r.data.reason === "owner_only"), "the refusal is audited");
      // The owner can.
      assert.equal((await api("PUT", "/orgs/default/members", { email: "bystander@example.com", role: "viewer" }, { token: owner.accessToken })).status, 200);
      assert.equal(await roleOf("bystander@example.com"), "viewer");
    });

    describe("another organisation's apps", () => {
      let outsider: TestUser;
      before(async () => {
        outsider = await addUser(api, work, { email: "outsider@example.com" });
        assert.equal((await api("POST", "/orgs", { slug: "elsewhere" }, { token: outsider.accessToken })).status, 201);
        assert.equal((await api("POST", "/apps", { name: "theirs" }, { token: outsider.accessToken })).status, 201);
      });

      it("shows a platform admin, who has no role in that organisation, as platform-admin on its app", async () => {
        const r = await api("GET", "/apps/theirs");
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.role, "platform-admin");
      });

      it("answers every SSH command about them exactly as for a missing app", async () => {
        for (const op of [...SSH_OPS, SSH_DESTROY]) {
          const real = op === SSH_DESTROY ? throwaway("ssh", "outsider") : APP;
          const [a, b] = await Promise.all([deck.ssh(op.command(real, "outsider"), { keyFile: outsider.keyFile }), deck.ssh(op.command(GHOST, "outsider"), { keyFile: outsider.keyFile })]);
          assert.equal(a.code, 1, `${op.command(real, "outsider")}: ${a.stderr}`);
          assert.match(a.stderr, /does not exist/);
          assert.deepEqual({ code: a.code, stdout: a.stdout, stderr: neutral(a.stderr, real) }, { code: b.code, stdout: b.stdout, stderr: neutral(b.stderr, GHOST) }, op.command(real, "outsider"));
        }
        assert.equal((await api("GET", `/apps/${throwaway("ssh", "outsider")}`)).status, 200, "the app the outsider tried to destroy is still there");
      });

      it("answers every REST route about them exactly as for a missing app", async () => {
        for (const op of [...REST_OPS, REST_DESTROY]) {
          const real = op === REST_DESTROY ? throwaway("api", "outsider") : APP;
          const a = await api(op.method, op.path(real), op.body?.("outsider"), { token: outsider.accessToken });
          const b = await api(op.method, op.path(GHOST), op.body?.("outsider"), { token: outsider.accessToken });
          assert.equal(a.status, 404, `${op.method} ${op.path(real)}: ${a.text}`);
          assert.deepEqual({ status: a.status, body: neutral(a.text, real) }, { status: b.status, body: neutral(b.text, GHOST) }, `${op.method} ${op.path(real)}`);
        }
        assert.equal((await api("GET", `/apps/${throwaway("api", "outsider")}`)).status, 200, "the app the outsider tried to destroy is still there");
      });

      it("cannot fetch or push them over git, and is told they do not exist", async () => {
        for (const via of ["ssh", "http"] as const) {
          const fetchReal = await gitAs(deck, outsider, repo, { op: "fetch", via, app: APP });
          const fetchGhost = await gitAs(deck, outsider, repo, { op: "fetch", via, app: GHOST });
          assert.notEqual(fetchReal.code, 0);
          assert.equal(fetchReal.code, fetchGhost.code);
          assert.equal(neutral(fetchReal.stderr, APP), neutral(fetchGhost.stderr, GHOST), `git fetch over ${via}`);
          assert.match(fetchReal.stderr, /deck: app "web" does not exist/, `git fetch over ${via}:\n${fetchReal.stderr}`);
          // A push to a free name would create the app in the outsider's org, so only the refusal is compared.
          const push = await gitAs(deck, outsider, repo, { op: "push", via, app: APP, ref: "refs/heads/outsider" });
          assert.notEqual(push.code, 0);
          assert.match(push.stderr, /deck: app "web" does not exist/, `git push over ${via}:\n${push.stderr}`);
        }
        const refs = await gitAs(deck, users.get("viewer")!, repo, { op: "fetch", via: "ssh", app: APP, ref: "refs/heads/outsider" });
        assert.notEqual(refs.code, 0, "the outsider's branch was not stored");
      });

      it("sees none of them in apps:list or GET /apps", async () => {
        const list = await deck.ssh("apps:list --json", { keyFile: outsider.keyFile });
        assert.equal(list.code, 0, list.stderr);
        assert.deepEqual(JSON.parse(list.stdout).map((a: { name: string }) => a.name), ["theirs"]);
        const rest = await api("GET", "/apps", undefined, { token: outsider.accessToken });
        assert.equal(rest.status, 200);
        assert.deepEqual(rest.json.items.map((a: { name: string }) => a.name), ["theirs"]);
        // And org default's members see none of the outsider's.
        const viewer = await api("GET", "/apps?limit=100", undefined, { token: users.get("viewer")!.accessToken });
        assert.ok(!viewer.json.items.some((a: { name: string }) => a.name === "theirs"));
        assert.ok(viewer.json.items.some((a: { name: string }) => a.name === APP));
      });

      it("cannot read the organisation's members or audit: 404 like a missing organisation", async () => {
        for (const path of ["", "/members", "/audit"]) {
          const a = await api("GET", `/orgs/default${path}`, undefined, { token: outsider.accessToken });
          const b = await api("GET", `/orgs/nosuchorg${path}`, undefined, { token: outsider.accessToken });
          assert.equal(a.status, 404, `/orgs/default${path}: ${a.text}`);
          assert.deepEqual({ status: a.status, body: neutral(a.text, "default") }, { status: b.status, body: neutral(b.text, "nosuchorg") });
        }
        const put = await api("PUT", "/orgs/default/members", { email: "outsider@example.com", role: "owner" }, { token: outsider.accessToken });
        assert.equal(put.status, 404, put.text);
        const members = await api("GET", "/orgs/default/members");
        assert.ok(!members.json.items.some((m: { email: string }) => m.email === "outsider@example.com"), "the outsider did not join");
      });
    });

    describe("a role granted on one app", () => {
      let grantee: TestUser;
      before(async () => {
        grantee = await addUser(api, work, { email: "grantee@example.com" });
        const grant = await api("PUT", `/apps/${APP}/access`, { email: grantee.email, role: "member" });
        assert.equal(grant.status, 200, grant.text);
      });

      it("lets a user with no organisation role deploy that app and read its logs", async () => {
        const v3 = await commitFiles(repo, nodeApp("v3"), "v3");
        const push = await gitAs(deck, grantee, repo, { op: "push", via: "ssh", app: APP });
        assert.equal(push.code, 0, push.stderr);
        assert.match((await deck.get(APP)).body, /^v3 hello/);
        const releases = await deck.ssh(`releases ${APP} --json`, { keyFile: grantee.keyFile });
        assert.equal(releases.code, 0, releases.stderr);
        assert.equal(JSON.parse(releases.stdout)[0].commit, v3);
        const logs = await deck.ssh(`logs ${APP} -n 200`, { keyFile: grantee.keyFile });
        assert.equal(logs.code, 0, logs.stderr);
        assert.match(logs.stdout, /v3 listening on/);
        const restLogs = await api("GET", `/apps/${APP}/logs?lines=10`, undefined, { token: grantee.accessToken });
        assert.equal(restLogs.status, 200, restLogs.text);
        // The grant is the role GET /apps/:app reports (the grantee has no org role at all).
        assert.equal((await api("GET", `/apps/${APP}`, undefined, { token: grantee.accessToken })).json.role, "member");
        // member, not admin: config changes stay out of reach.
        assertSshDenied(await deck.ssh(`config:set ${APP} X=1`, { keyFile: grantee.keyFile }), "config:set", "grantee config:set");
      });

      it("shows them no other app", async () => {
        const list = await deck.ssh("apps:list --json", { keyFile: grantee.keyFile });
        assert.deepEqual(JSON.parse(list.stdout).map((a: { name: string }) => a.name), [APP]);
        const rest = await api("GET", "/apps", undefined, { token: grantee.accessToken });
        assert.deepEqual(rest.json.items.map((a: { name: string }) => a.name), [APP]);
        const other = await deck.ssh(`ps:report ${OTHER_APP}`, { keyFile: grantee.keyFile });
        const ghost = await deck.ssh(`ps:report ${GHOST}`, { keyFile: grantee.keyFile });
        assert.equal(other.code, 1);
        assert.equal(neutral(other.stderr, OTHER_APP), neutral(ghost.stderr, GHOST));
        const otherRest = await api("GET", `/apps/${OTHER_APP}`, undefined, { token: grantee.accessToken });
        assert.equal(otherRest.status, 404, otherRest.text);
        const fetchOther = await gitAs(deck, grantee, repo, { op: "fetch", via: "ssh", app: OTHER_APP });
        assert.notEqual(fetchOther.code, 0);
        assert.match(fetchOther.stderr, /does not exist/);
        const orgs = await api("GET", "/orgs/default/members", undefined, { token: grantee.accessToken });
        assert.equal(orgs.status, 404, "a per-app role is no membership of the organisation");
      });
    });
  });
}
