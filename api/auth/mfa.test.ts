import { sql } from "slonik";
import { configureSecrets } from "../../store/secret-box.ts";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Secret, TOTP, URI } from "otpauth";
import { isDeckError } from "../../core/errors.ts";
import { insertUser, q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import {
  beginMfaEnrolment,
  checkTotpCode,
  checkTotpOrRecoveryCode,
  confirmMfaEnrolment,
  disableMfa,
  mfaStatus,
  regenerateRecoveryCodes,
  useRecoveryCode,
} from "./mfa.ts";

const deckError = (code: string) => (e: unknown) => isDeckError(e) && e.code === code;

/** What an authenticator app shows for `secret` at time `at`. */
const codeAt = (secret: string, at: number) => TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30, timestamp: at });

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`TOTP multi-factor authentication on ${backend.name} PostgreSQL`, () => {
    let tdb: TestDatabase;
    // Mid-step, so ±1 step stays within one test's arithmetic.
    let t = Date.parse("2025-06-01T12:00:15Z");
    before(async () => {
      tdb = await openTestDatabase(backend);
      configureSecrets({ dataDir: tdb.dataDir });
    });
    after(() => tdb?.cleanup());

    const enrol = async (email: string) => {
      const user = await insertUser(tdb.db.pool, { email, isAdmin: false });
      const { secret } = await beginMfaEnrolment(tdb.db.pool, user.id);
      const { recoveryCodes } = await confirmMfaEnrolment(tdb.db.pool, user.id, codeAt(secret, t), { now: t });
      return { user, secret, recoveryCodes };
    };

    test("the TOTP secret is stored encrypted, never in clear", async () => {
      const { user, secret } = await enrol("enc@example.com");
      const stored = String(await tdb.db.pool.oneFirst(sql.unsafe`SELECT mfa_secret FROM users WHERE id = ${user.id}`));
      assert.match(stored, /^v1:/);
      assert.ok(!stored.includes(secret));
    });

    test("enrolment gives an otpauth:// URI for CloudDeck, and needs a valid code before it counts", async () => {
      const db = tdb.db.pool;
      const user = await insertUser(db, { email: "ada@example.com", isAdmin: false });
      const { uri, secret } = await beginMfaEnrolment(db, user.id);
      const parsed = URI.parse(uri);
      assert.ok(parsed instanceof TOTP);
      assert.equal(parsed.issuer, "CloudDeck");
      assert.equal(parsed.label, "ada@example.com");
      assert.equal(parsed.algorithm, "SHA1");
      assert.equal(parsed.digits, 6);
      assert.equal(parsed.period, 30);
      assert.equal(parsed.secret.base32, secret);
      assert.deepEqual(await mfaStatus(db, user.id), { enabled: false, enabledAt: null, pending: true, recoveryCodesLeft: 0 });

      const wrong = String((Number(codeAt(secret, t)) + 1) % 1_000_000).padStart(6, "0");
      await assert.rejects(confirmMfaEnrolment(db, user.id, wrong, { now: t }), deckError("invalid_mfa_code"));
      await assert.rejects(confirmMfaEnrolment(db, user.id, codeAt(secret, t - 120_000), { now: t }), deckError("invalid_mfa_code"), "a code two minutes old");
      assert.equal((await mfaStatus(db, user.id)).enabled, false);

      const { recoveryCodes } = await confirmMfaEnrolment(db, user.id, codeAt(secret, t), { now: t });
      assert.equal(recoveryCodes.length, 10);
      assert.equal(new Set(recoveryCodes).size, 10);
      for (const c of recoveryCodes) assert.match(c, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/);
      const status = await mfaStatus(db, user.id);
      assert.equal(status.enabled, true);
      assert.equal(status.recoveryCodesLeft, 10);
      const stored = await db.any(q`SELECT code_hash FROM recovery_codes WHERE user_id = ${user.id}`);
      const clear = recoveryCodes.map((c) => c.replaceAll("-", ""));
      for (const r of stored) assert.ok(!clear.includes(String(r.code_hash)) && !recoveryCodes.includes(String(r.code_hash)), "recovery codes are stored hashed");

      await assert.rejects(beginMfaEnrolment(db, user.id), deckError("mfa_already_enabled"));
    });

    test("a current code works, with one step of drift either way", async () => {
      const { user, secret } = await enrol("drift@example.com");
      t += 30_000;
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t - 30_000), { now: t }), { ok: false, reason: "replayed" },
        "the previous step's code was the one used to enrol");
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t + 30_000), { now: t }), { ok: true }, "a fast device clock");
      t += 90_000;
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t - 30_000), { now: t }), { ok: true }, "a slow device clock");
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t - 60_000), { now: t }), { ok: false, reason: "invalid" });
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, "12345", { now: t }), { ok: false, reason: "invalid" });
    });

    test("a code is good once: reusing it within its window is refused, also when tried at the same moment", async () => {
      const { user, secret } = await enrol("replay@example.com");
      t += 60_000;
      const code = codeAt(secret, t);
      const results = await Promise.all([1, 2, 3].map(() => checkTotpCode(tdb.db.pool, user.id, code, { now: t })));
      assert.equal(results.filter((r) => r.ok).length, 1);
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, code, { now: t + 20_000 }), { ok: false, reason: "replayed" });
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t + 30_000), { now: t + 30_000 }), { ok: true });
    });

    test("a recovery code works exactly once, in any spelling", async () => {
      const { user, recoveryCodes } = await enrol("recover@example.com");
      const [first, second] = recoveryCodes as [string, string];
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, first), true);
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, first), false);
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, ` ${second.toUpperCase().replaceAll("-", " ")} `), true);
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, "aaaa-bbbb-cccc"), false);
      assert.equal((await mfaStatus(tdb.db.pool, user.id)).recoveryCodesLeft, 8);
      const other = await enrol("other@example.com");
      assert.equal(await useRecoveryCode(tdb.db.pool, other.user.id, recoveryCodes[2]!), false, "codes belong to one account");
    });

    test("new recovery codes replace the old ones", async () => {
      const { user, secret, recoveryCodes } = await enrol("regen@example.com");
      t += 30_000;
      const fresh = await regenerateRecoveryCodes(tdb.db.pool, user.id, codeAt(secret, t), { now: t });
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, recoveryCodes[0]!), false);
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, fresh.recoveryCodes[0]!), true);
    });

    test("turning MFA off needs a valid code (TOTP or recovery) and removes the recovery codes", async () => {
      const { user, secret, recoveryCodes } = await enrol("off@example.com");
      t += 30_000;
      await assert.rejects(disableMfa(tdb.db.pool, user.id, "000000", { now: t }), deckError("invalid_mfa_code"));
      assert.equal((await mfaStatus(tdb.db.pool, user.id)).enabled, true);
      await disableMfa(tdb.db.pool, user.id, codeAt(secret, t), { now: t });
      assert.deepEqual(await mfaStatus(tdb.db.pool, user.id), { enabled: false, enabledAt: null, pending: false, recoveryCodesLeft: 0 });
      assert.equal(await useRecoveryCode(tdb.db.pool, user.id, recoveryCodes[0]!), false);
      assert.deepEqual(await checkTotpCode(tdb.db.pool, user.id, codeAt(secret, t + 30_000), { now: t + 30_000 }), { ok: false, reason: "not_enabled" });

      const lost = await enrol("lost-device@example.com");
      assert.deepEqual(await checkTotpOrRecoveryCode(tdb.db.pool, lost.user.id, lost.recoveryCodes[3]!, { now: t }), { ok: true });
      await disableMfa(tdb.db.pool, lost.user.id, lost.recoveryCodes[4]!, { now: t });
      assert.equal((await mfaStatus(tdb.db.pool, lost.user.id)).enabled, false);
    });
  });
}
