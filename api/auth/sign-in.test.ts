import { configureSecrets } from "../../store/secret-box.ts";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Secret, TOTP } from "otpauth";
import { DeckError, isDeckError } from "../../core/errors.ts";
import { insertUser, q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { beginMfaEnrolment, confirmMfaEnrolment } from "./mfa.ts";
import { createAuthDeps, setPassword, signIn, type AuthDeps } from "./sign-in.ts";

const PASSWORD = "correct horse battery staple";
const codeAt = (secret: string, at: number) => TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30, timestamp: at });

async function failure(p: Promise<unknown>): Promise<DeckError> {
  try {
    await p;
  } catch (e) {
    if (isDeckError(e)) return e;
    throw e;
  }
  assert.fail("expected the sign-in to fail");
}

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`sign-in on ${backend.name} PostgreSQL`, () => {
    let tdb: TestDatabase;
    let deps: AuthDeps;
    let t = Date.parse("2025-06-01T12:00:15Z");
    let ipCounter = 0;
    // A fresh address per test, so that only the account limit is in play unless a test says otherwise.
    const freshIp = () => `192.0.2.${++ipCounter}`;

    before(async () => {
      tdb = await openTestDatabase(backend);
      configureSecrets({ dataDir: tdb.dataDir });
      deps = await createAuthDeps({ db: tdb.db.pool, dataDir: tdb.dataDir, now: () => t });
    });
    after(() => tdb?.cleanup());

    const newUser = async (email: string) => {
      const user = await insertUser(tdb.db.pool, { email, isAdmin: false });
      await setPassword(tdb.db.pool, user.id, PASSWORD);
      return user;
    };
    const auditRows = (target: string) =>
      tdb.db.pool.any(q`SELECT user_id, action, source_ip, result, data FROM audit_log WHERE target = ${target} ORDER BY id`);

    test("setPassword enforces the policy and stores only an argon2id hash", async () => {
      const user = await insertUser(tdb.db.pool, { email: "policy@example.com", isAdmin: false });
      await assert.rejects(setPassword(tdb.db.pool, user.id, "short"), (e) => isDeckError(e) && e.code === "weak_password");
      await assert.rejects(setPassword(tdb.db.pool, user.id, "policy@example.com"), (e) => isDeckError(e) && e.code === "weak_password");
      await assert.rejects(setPassword(tdb.db.pool, 999_999, PASSWORD), (e) => isDeckError(e) && e.code === "not_found");
      await setPassword(tdb.db.pool, user.id, PASSWORD);
      const stored = String(await tdb.db.pool.oneFirst(q`SELECT password_hash FROM users WHERE id = ${user.id}`));
      assert.match(stored, /^\$argon2id\$/);
      assert.ok(!stored.includes(PASSWORD));
    });

    test("the right password signs in with a short-lived access token for that user, and is audited", async () => {
      const user = await newUser("ada@example.com");
      const ip = freshIp();
      const session = await signIn(deps, { email: " Ada@Example.com ", password: PASSWORD, ip });
      assert.equal(session.expiresIn, 900);
      assert.deepEqual(session.user, user);
      const claims = await deps.keys.verifyAccessToken(session.accessToken);
      assert.equal(claims.userId, user.id);
      assert.equal(claims.exp, Math.floor(t / 1000) + 900);
      const rows = await auditRows("user:ada@example.com");
      assert.deepEqual(rows.map((r) => [r.action, r.result, r.user_id, r.source_ip]), [["auth:sign-in", "ok", user.id, ip]]);
    });

    test("a wrong password and an unknown email get the same answer, both audited without the password", async () => {
      await newUser("grace@example.com");
      const wrongPassword = await failure(signIn(deps, { email: "grace@example.com", password: "not the password", ip: freshIp() }));
      const unknownEmail = await failure(signIn(deps, { email: "nobody@example.com", password: "not the password", ip: freshIp() }));
      assert.equal(wrongPassword.code, "invalid_credentials");
      assert.deepEqual([unknownEmail.code, unknownEmail.message, unknownEmail.data], [wrongPassword.code, wrongPassword.message, wrongPassword.data]);
      const rows = [...(await auditRows("user:grace@example.com")), ...(await auditRows("user:nobody@example.com"))];
      assert.deepEqual(rows.map((r) => [r.action, r.result]), [["auth:sign-in", "failed"], ["auth:sign-in", "failed"]]);
      for (const r of rows) assert.ok(!JSON.stringify(r).includes("not the password"));
      // Both paths pay for one argon2 verification: the unknown email is not answered much faster.
      const time = async (email: string) => {
        const start = performance.now();
        await failure(signIn(deps, { email, password: "not the password", ip: freshIp() }));
        return performance.now() - start;
      };
      await newUser("timing@example.com");
      // The fastest of five interleaved tries each: other work on the machine only ever adds time.
      let known = Infinity;
      let unknown = Infinity;
      for (let i = 0; i < 5; i++) {
        known = Math.min(known, await time("timing@example.com"));
        unknown = Math.min(unknown, await time(`nobody-else-${i}@example.com`));
      }
      assert.ok(unknown > known / 3, `unknown email answered in ${unknown.toFixed(1)} ms, known in ${known.toFixed(1)} ms`);
    });

    test("once MFA is on, the password alone is not enough; the current code is, once", async () => {
      const user = await newUser("mfa@example.com");
      const { secret } = await beginMfaEnrolment(tdb.db.pool, user.id);
      const { recoveryCodes } = await confirmMfaEnrolment(tdb.db.pool, user.id, codeAt(secret, t), { now: t });
      t += 30_000;

      const required = await failure(signIn(deps, { email: "mfa@example.com", password: PASSWORD, ip: freshIp() }));
      assert.equal(required.code, "mfa_required");
      const wrongPassword = await failure(signIn(deps, { email: "mfa@example.com", password: "wrong password!", otp: codeAt(secret, t), ip: freshIp() }));
      assert.equal(wrongPassword.code, "invalid_credentials", "a code does not stand in for the password");
      const badCode = await failure(signIn(deps, { email: "mfa@example.com", password: PASSWORD, otp: "000000", ip: freshIp() }));
      assert.equal(badCode.code, "invalid_mfa_code");

      const code = codeAt(secret, t);
      const session = await signIn(deps, { email: "mfa@example.com", password: PASSWORD, otp: code, ip: freshIp() });
      assert.equal((await deps.keys.verifyAccessToken(session.accessToken)).userId, user.id);
      const replay = await failure(signIn(deps, { email: "mfa@example.com", password: PASSWORD, otp: code, ip: freshIp() }));
      assert.equal(replay.code, "invalid_mfa_code");
      assert.match(replay.message, /already used/);

      const viaRecovery = await signIn(deps, { email: "mfa@example.com", password: PASSWORD, recoveryCode: recoveryCodes[0]!, ip: freshIp() });
      assert.equal(viaRecovery.user.id, user.id);
      const again = await failure(signIn(deps, { email: "mfa@example.com", password: PASSWORD, recoveryCode: recoveryCodes[0]!, ip: freshIp() }));
      assert.equal(again.code, "invalid_mfa_code");

      const results = (await auditRows("user:mfa@example.com")).map((r) => [r.result, (r.data as { reason?: string }).reason ?? "-"]);
      assert.deepEqual(results, [
        ["denied", "mfa_required"],
        ["failed", "invalid_credentials"],
        ["failed", "invalid_mfa_code"],
        ["ok", "-"],
        ["failed", "invalid_mfa_code"],
        ["ok", "-"],
        ["failed", "invalid_mfa_code"],
      ]);
      for (const r of await auditRows("user:mfa@example.com")) {
        const text = JSON.stringify(r);
        assert.ok(!text.includes(code) && !text.includes(recoveryCodes[0]!) && !text.includes(PASSWORD), "no secrets in the audit log");
      }
    });

    test("five failures lock the account for a while (429-style retry), even with the right password, until the window passes", async () => {
      await newUser("locked@example.com");
      for (let i = 0; i < 5; i++) {
        assert.equal((await failure(signIn(deps, { email: "locked@example.com", password: `guess number ${i}`, ip: freshIp() }))).code, "invalid_credentials");
      }
      const limited = await failure(signIn(deps, { email: "locked@example.com", password: PASSWORD, ip: freshIp() }));
      assert.equal(limited.code, "rate_limited");
      assert.equal(limited.data.retryAfterSeconds, 180);
      const denied = (await auditRows("user:locked@example.com")).filter((r) => r.result === "denied");
      assert.equal(denied.length, 1);
      assert.equal((denied[0]!.data as { reason: string }).reason, "rate_limited");

      t += 15 * 60_000;
      const session = await signIn(deps, { email: "locked@example.com", password: PASSWORD, ip: freshIp() });
      assert.equal(session.user.email, "locked@example.com");
    });

    test("one address guessing across accounts is limited too", async () => {
      const ip = freshIp();
      for (let i = 0; i < 20; i++) await failure(signIn(deps, { email: `spray${i}@example.com`, password: "password123", ip }));
      const limited = await failure(signIn(deps, { email: "ada@example.com", password: PASSWORD, ip }));
      assert.equal(limited.code, "rate_limited");
      assert.equal(limited.data.retryAfterSeconds, 3);
      assert.equal((await signIn(deps, { email: "ada@example.com", password: PASSWORD, ip: freshIp() })).user.email, "ada@example.com");
    });
  });
}
