import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { base64url, decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { TOTP, URI } from "otpauth";
import { addUser, apiClient, deckDatabaseUrl, gitAs, makeSshKey, queryDeckDatabase, type Api, type TestUser } from "./helpers/accounts.ts";
import { databaseBackends } from "./helpers/database.ts";
import { Deck, makeRepo, nodeApp, run } from "./helpers/deck.ts";

/**
 * Sign-in and credentials through the real server: scoped, expired and revoked personal tokens (for
 * the API and git over HTTP), forged access tokens, MFA with recovery codes, brute-force limits, and
 * SSH keys managed over SSH.
 */

const backends = await databaseBackends();

const APP = "scoped";

for (const backend of backends) {
  describe(`sign-in, tokens and keys through the real server (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let repo: string;
    let dbUrl: string;
    /** A platform-level stranger to everything but org default, where they are admin: scopes, not roles, limit them. */
    let user: TestUser;

    /** Creates a personal access token for `user` with their signed-in access token. */
    const mint = async (scopes: string[], name = scopes.join("+")) => {
      const r = await api("POST", "/tokens", { name, scopes }, { token: user.accessToken });
      assert.equal(r.status, 201, r.text);
      return { id: r.json.id as number, token: r.json.token as string };
    };
    const asToken = (token: string) => ({ keyFile: "", apiToken: token });

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-auth-"));
      deck = await Deck.start({ backend });
      api = apiClient(deck);
      dbUrl = deckDatabaseUrl(deck, backend);
      user = await addUser(api, work, { email: "scoped-user@example.com", org: "default", role: "admin", apiToken: false, sshKey: false });
      repo = await makeRepo(join(work, "app"), nodeApp("v1"));
      const push = await deck.push(repo, APP);
      assert.equal(push.code, 0, push.stderr);
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    describe("personal access token scopes", () => {
      /** Kept for the next test: token creation is rate limited per user (10 a minute), so tests share. */
      let writeToken = "";
      it("a read token reads (API and git fetch) but may not change config or restart", async () => {
        const { token } = await mint(["read"]);
        const get = await api("GET", `/apps/${APP}`, undefined, { token });
        assert.equal(get.status, 200, get.text);
        const fetch = await gitAs(deck, asToken(token), repo, { op: "fetch", via: "http", app: APP });
        assert.equal(fetch.code, 0, fetch.stderr);
        for (const [method, path, body] of [["PATCH", `/apps/${APP}/config`, { set: { A: "1" } }], ["POST", `/apps/${APP}/restart`, undefined]] as const) {
          const r = await api(method, path, body, { token });
          assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
          assert.equal(r.json.error.code, "insufficient_scope");
          assert.match(r.json.error.message, /lacks the "(write|deploy)" scope/);
        }
        const config = await api("GET", `/apps/${APP}/config`, undefined, { token });
        assert.deepEqual(Object.keys(config.json), [], "nothing was stored");
      });

      it("a read token cannot push over git HTTP", async () => {
        const { token } = await mint(["read"], "read-git");
        const push = await gitAs(deck, asToken(token), repo, { op: "push", via: "http", app: APP, ref: "refs/heads/read-token" });
        assert.notEqual(push.code, 0, `a read token pushed:\n${push.stderr}`);
        assert.match(push.stderr, /lacks the "deploy" scope needed to push/);
      });

      it("a deploy token restarts and pushes but may not change config", async () => {
        const { token } = await mint(["deploy"]);
        const restart = await api("POST", `/apps/${APP}/restart`, undefined, { token });
        assert.equal(restart.status, 200, restart.text);
        const push = await gitAs(deck, asToken(token), repo, { op: "push", via: "http", app: APP, ref: "refs/heads/deploy-token" });
        assert.equal(push.code, 0, push.stderr);
        const config = await api("PATCH", `/apps/${APP}/config`, { set: { A: "1" } }, { token });
        assert.equal(config.status, 403, config.text);
        assert.equal(config.json.error.code, "insufficient_scope");
        // The same change with a write token goes through: the scope was the only thing missing.
        const write = await mint(["write"], "write");
        writeToken = write.token;
        const ok = await api("PATCH", `/apps/${APP}/config`, { set: { A: "1" } }, { token: write.token });
        assert.equal(ok.status, 200, ok.text);
      });

      it("a token cannot mint a token with more scope than it has", async () => {
        const write = { token: writeToken };
        assert.ok(write.token, "the write token of the previous test");
        const over = await api("POST", "/tokens", { name: "escalate", scopes: ["admin"] }, { token: write.token });
        assert.equal(over.status, 403, over.text);
        assert.equal(over.json.error.code, "insufficient_scope");
        assert.match(over.json.error.message, /"admin" scope/);
        const mixed = await api("POST", "/tokens", { name: "escalate2", scopes: ["read", "admin"] }, { token: write.token });
        assert.equal(mixed.status, 403, mixed.text);
        const under = await api("POST", "/tokens", { name: "narrower", scopes: ["read"] }, { token: write.token });
        assert.equal(under.status, 201, under.text);
        const readMint = await api("POST", "/tokens", { name: "from-read", scopes: ["read"] }, { token: under.json.token });
        assert.equal(readMint.status, 403, "a read token mints nothing");
        assert.equal(readMint.json.error.code, "insufficient_scope");
        const names = (await api("GET", "/tokens", undefined, { token: user.accessToken })).json.items.map((t: { name: string }) => t.name);
        assert.ok(!names.includes("escalate") && !names.includes("escalate2") && !names.includes("from-read"), names.join(", "));
      });
    });

    describe("expired and revoked personal tokens", () => {
      it("an expired token is refused by the API and by git over HTTP", async () => {
        const { id, token } = await mint(["write"], "short-lived");
        assert.equal((await api("GET", "/users/me", undefined, { token })).status, 200);
        assert.equal((await gitAs(deck, asToken(token), repo, { op: "fetch", via: "http", app: APP })).code, 0);
        // The API's shortest expiry is a day; move it into the past directly.
        const rows = await queryDeckDatabase(dbUrl, "UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1 RETURNING id", [id]);
        assert.equal(rows.length, 1);
        const me = await api("GET", "/users/me", undefined, { token });
        assert.equal(me.status, 401, me.text);
        assert.equal(me.json.error.code, "invalid_token");
        const fetch = await gitAs(deck, asToken(token), repo, { op: "fetch", via: "http", app: APP });
        assert.notEqual(fetch.code, 0);
        assert.match(fetch.stderr, /Authentication failed|401/, fetch.stderr);
      });

      it("a revoked token is refused by the API and by git over HTTP", async () => {
        const { id, token } = await mint(["write"], "to-revoke");
        assert.equal((await api("GET", "/users/me", undefined, { token })).status, 200);
        assert.equal((await gitAs(deck, asToken(token), repo, { op: "fetch", via: "http", app: APP })).code, 0);
        const del = await api("DELETE", `/tokens/${id}`, undefined, { token: user.accessToken });
        assert.equal(del.status, 200, del.text);
        const me = await api("GET", "/users/me", undefined, { token });
        assert.equal(me.status, 401, me.text);
        assert.equal(me.json.error.code, "invalid_token");
        const fetch = await gitAs(deck, asToken(token), repo, { op: "fetch", via: "http", app: APP });
        assert.notEqual(fetch.code, 0);
        assert.match(fetch.stderr, /Authentication failed|401/, fetch.stderr);
        const listed = (await api("GET", "/tokens", undefined, { token: user.accessToken })).json.items.find((t: { id: number }) => t.id === id);
        assert.ok(listed.revokedAt, "the list shows it revoked");
      });
    });

    describe("access tokens", () => {
      let kid: string;
      let valid: string;
      const claims = (over: Record<string, unknown> = {}) => {
        const now = Math.floor(Date.now() / 1000);
        return { iss: "clouddeck", aud: "clouddeck", sub: String(user.id), scope: "admin", iat: now, exp: now + 600, jti: "forged", ...over };
      };
      const encode = (part: unknown) => base64url.encode(JSON.stringify(part));
      const refused = async (token: string, what: string) => {
        const r = await api("GET", "/users/me", undefined, { token });
        assert.equal(r.status, 401, `${what}: ${r.text}`);
        assert.equal(r.json.error.code, "invalid_token", what);
        const apps = await api("GET", "/apps", undefined, { token });
        assert.equal(apps.status, 401, `${what} (GET /apps)`);
      };

      before(async () => {
        kid = (await api("GET", "/auth/jwks", undefined, { token: null })).json.keys[0].kid;
        const s = await api("POST", "/session", { email: user.email, password: user.password }, { token: null });
        assert.equal(s.status, 201, s.text);
        valid = s.json.accessToken;
      });

      it("accepts the access token POST /session issued", async () => {
        assert.equal(decodeProtectedHeader(valid).alg, "EdDSA");
        const me = await api("GET", "/users/me", undefined, { token: valid });
        assert.equal(me.status, 200, me.text);
        assert.equal(me.json.email, user.email);
      });

      it("refuses an unsigned token (alg none)", async () => {
        await refused(`${encode({ alg: "none", typ: "at+jwt", kid })}.${encode(claims())}.`, "alg none");
        await refused(`${encode({ alg: "none", typ: "at+jwt" })}.${encode(claims())}.`, "alg none without kid");
      });

      it("refuses an HS256 token, even one keyed with deck's public key", async () => {
        const jwk = (await api("GET", "/auth/jwks", undefined, { token: null })).json.keys[0];
        for (const secret of [new TextEncoder().encode("a-guessable-shared-secret-value-32b"), base64url.decode(jwk.x), new TextEncoder().encode(JSON.stringify(jwk))]) {
          const t = await new SignJWT(claims()).setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid }).sign(secret);
          await refused(t, "HS256");
        }
      });

      it("refuses a token signed with another Ed25519 key", async () => {
        const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
        await refused(await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid }).sign(privateKey), "other key, deck's kid");
        await refused(await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: "someone-elses-key" }).sign(privateKey), "other key, own kid");
      });

      it("refuses a valid token whose payload was changed", async () => {
        const [header, , signature] = valid.split(".");
        const payload = decodeJwt(valid);
        // Becoming the platform admin (user 1), or living longer: either way the signature no longer matches.
        await refused(`${header}.${encode({ ...payload, sub: "1" })}.${signature}`, "tampered subject");
        await refused(`${header}.${encode({ ...payload, exp: (payload.exp ?? 0) + 86_400 })}.${signature}`, "tampered expiry");
        // The untouched token still works.
        assert.equal((await api("GET", "/users/me", undefined, { token: valid })).status, 200);
      });
    });

    describe("multi-factor sign-in", () => {
      let mfaUser: TestUser;
      let recoveryCodes: string[];
      let totp: TOTP;

      before(async () => {
        mfaUser = await addUser(api, work, { email: "mfa-user@example.com", org: "default", role: "member", apiToken: false, sshKey: false });
      });

      it("is enabled with an otpauth URI and a confirming code, which returns recovery codes", async () => {
        const start = await api("POST", "/users/me/mfa", undefined, { token: mfaUser.accessToken });
        assert.equal(start.status, 201, start.text);
        assert.match(start.json.uri, /^otpauth:\/\/totp\//);
        totp = URI.parse(start.json.uri) as TOTP;
        assert.ok(totp instanceof TOTP);
        const wrong = await api("POST", "/users/me/mfa/confirm", { code: String((Number(totp.generate()) + 1) % 1_000_000).padStart(6, "0") }, { token: mfaUser.accessToken });
        assert.equal(wrong.status, 401, wrong.text);
        // The previous time step's code (still accepted), so that the current one stays unused for sign-in.
        const confirm = await api("POST", "/users/me/mfa/confirm", { code: totp.generate({ timestamp: Date.now() - 30_000 }) }, { token: mfaUser.accessToken });
        assert.equal(confirm.status, 200, confirm.text);
        recoveryCodes = confirm.json.recoveryCodes;
        assert.ok(Array.isArray(recoveryCodes) && recoveryCodes.length >= 5, confirm.text);
        assert.equal(new Set(recoveryCodes).size, recoveryCodes.length);
        assert.equal((await api("GET", "/users/me/mfa", undefined, { token: mfaUser.accessToken })).json.enabled, true);
      });

      it("then needs the code: without it 401 mfa_required, with a wrong one 401, with the right one 201", async () => {
        const without = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password }, { token: null });
        assert.equal(without.status, 401, without.text);
        assert.equal(without.json.error.code, "mfa_required");
        const current = totp.generate();
        const wrongCode = String((Number(current) + 500_000) % 1_000_000).padStart(6, "0");
        const wrong = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password, otp: wrongCode }, { token: null });
        assert.equal(wrong.status, 401, wrong.text);
        assert.equal(wrong.json.error.code, "invalid_mfa_code");
        const badPassword = await api("POST", "/session", { email: mfaUser.email, password: "not-the-password", otp: current }, { token: null });
        assert.equal(badPassword.status, 401, "a good code does not make up for a wrong password");
        assert.equal(badPassword.json.error.code, "invalid_credentials");
        const ok = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password, otp: current }, { token: null });
        assert.equal(ok.status, 201, ok.text);
        assert.equal((await api("GET", "/users/me", undefined, { token: ok.json.accessToken })).json.email, mfaUser.email);
      });

      it("accepts a recovery code once", async () => {
        const code = recoveryCodes[0];
        const first = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password, recoveryCode: code }, { token: null });
        assert.equal(first.status, 201, first.text);
        const again = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password, recoveryCode: code }, { token: null });
        assert.equal(again.status, 401, again.text);
        assert.equal(again.json.error.code, "invalid_mfa_code");
        assert.equal((await api("GET", "/users/me/mfa", undefined, { token: first.json.accessToken })).json.recoveryCodesLeft, recoveryCodes.length - 1);
        // Another unused code still works.
        const second = await api("POST", "/session", { email: mfaUser.email, password: mfaUser.password, recoveryCode: recoveryCodes[1] }, { token: null });
        assert.equal(second.status, 201, second.text);
      });
    });

    it("limits repeated wrong passwords with 429 and Retry-After, and audits the failures", async () => {
      const victim = await addUser(api, work, { email: "victim@example.com", org: "default", role: "viewer", apiToken: false, sshKey: false });
      const statuses: number[] = [];
      let limited;
      for (let i = 0; i < 10; i++) {
        const r = await api("POST", "/session", { email: victim.email, password: `wrong-guess-${i}` }, { token: null });
        statuses.push(r.status);
        if (r.status === 429) {
          limited = r;
          break;
        }
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json.error.code, "invalid_credentials");
      }
      assert.ok(limited, `never limited: ${statuses.join(" ")}`);
      assert.ok(statuses.length >= 3, `limited too early: ${statuses.join(" ")}`);
      assert.equal(limited.json.error.code, "rate_limited");
      const retryAfter = Number(limited.headers.get("retry-after"));
      assert.ok(Number.isInteger(retryAfter) && retryAfter > 0, `Retry-After: ${limited.headers.get("retry-after")}`);
      // While limited, even the right password is not checked.
      const right = await api("POST", "/session", { email: victim.email, password: victim.password }, { token: null });
      assert.equal(right.status, 429, right.text);
      // Another account from the same address is not locked out by this one's failures.
      const other = await api("POST", "/session", { email: user.email, password: user.password }, { token: null });
      assert.equal(other.status, 201, other.text);

      const audit = await queryDeckDatabase<{ result: string; reason: string | null; source_ip: string | null; password_seen: boolean }>(dbUrl,
        `SELECT result, data->>'reason' AS reason, source_ip::text AS source_ip, data::text LIKE '%wrong-guess%' AS password_seen
           FROM audit_log WHERE action = 'auth:sign-in' AND target = $1 ORDER BY id`, [`user:${victim.email}`]);
      const failed = audit.filter((r) => r.result === "failed" && r.reason === "invalid_credentials");
      assert.equal(failed.length, statuses.length - 1, JSON.stringify(audit));
      assert.ok(audit.some((r) => r.result === "denied" && r.reason === "rate_limited"), JSON.stringify(audit));
      assert.ok(audit.every((r) => r.source_ip?.startsWith("127.0.0.1") || r.source_ip?.includes("127.0.0.1")), JSON.stringify(audit));
      assert.ok(audit.every((r) => !r.password_seen), "no guessed password in the audit log");
    });

    it("manages SSH keys over SSH: keys:add from stdin, keys:list, keys:remove", async () => {
      const owner = await addUser(api, work, { email: "keys-user@example.com", org: "default", role: "member", apiToken: false });
      const laptop = makeSshKey(work, "laptop");
      const laptopPub = readFileSync(`${laptop}.pub`, "utf8");
      const fingerprint = /SHA256:\S+/.exec(await sshKeygenFingerprint(`${laptop}.pub`))![0];
      const sshAs = (keyFile: string, command: string, input?: string) => {
        const args = deck.sshArgs();
        args[1] = keyFile;
        return run("ssh", [...args, "deck@127.0.0.1", command], { input, timeoutMs: 30_000 });
      };

      const before = await sshAs(laptop, "apps:list");
      assert.equal(before.code, 255, `an unknown key is refused: ${before.stderr}`);
      assert.match(before.stderr, /Permission denied \(publickey\)/);

      const added = await sshAs(owner.keyFile, "keys:add laptop", laptopPub);
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, new RegExp(`added ${fingerprint.replace(/[+/]/g, "\\$&")} as key \\d+`));
      const keyId = /as key (\d+)/.exec(added.stdout)![1];

      const list = await sshAs(owner.keyFile, "keys:list --json");
      assert.equal(list.code, 0, list.stderr);
      const keys = JSON.parse(list.stdout) as { id: number; name: string; fingerprint: string }[];
      assert.equal(keys.length, 2);
      assert.deepEqual(keys.find((k) => String(k.id) === keyId), { ...keys.find((k) => String(k.id) === keyId)!, name: "laptop", fingerprint });
      const table = await sshAs(laptop, "keys:list");
      assert.equal(table.code, 0, `the new key runs commands: ${table.stderr}`);
      assert.match(table.stdout, /laptop/);

      const dup = await sshAs(owner.keyFile, "keys:add again", laptopPub);
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /already registered/);

      const removed = await sshAs(owner.keyFile, `keys:remove ${keyId}`);
      assert.equal(removed.code, 0, removed.stderr);
      const afterwards = await sshAs(laptop, "apps:list");
      assert.equal(afterwards.code, 255, `a removed key is refused: ${afterwards.stdout}${afterwards.stderr}`);
      assert.match(afterwards.stderr, /Permission denied \(publickey\)/);
      const last = await sshAs(owner.keyFile, "keys:list --json");
      assert.equal(JSON.parse(last.stdout).length, 1);
      // Someone else's key id is not yours to remove.
      const adminKeys = await deck.ssh("keys:list --json");
      const adminKeyId = JSON.parse(adminKeys.stdout)[0].id;
      const foreign = await sshAs(owner.keyFile, `keys:remove ${adminKeyId}`);
      assert.equal(foreign.code, 1);
      assert.match(foreign.stderr, /you have no SSH key/);
      const ids = (out: string) => JSON.parse(out).map((k: { id: number }) => k.id);
      assert.deepEqual(ids((await deck.ssh("keys:list --json")).stdout), ids(adminKeys.stdout));
    });
  });
}

async function sshKeygenFingerprint(pubFile: string): Promise<string> {
  const r = await run("ssh-keygen", ["-l", "-E", "sha256", "-f", pubFile]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}
