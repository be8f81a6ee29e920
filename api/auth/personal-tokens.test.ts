import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isDeckError } from "../../core/errors.ts";
import { findUserByApiToken, insertUser, q, type UserRow } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { authenticateBearer } from "./authenticate.ts";
import { createPersonalToken, listPersonalTokens, revokePersonalToken, verifyPersonalToken } from "./personal-tokens.ts";
import { SCOPE_ACTIONS, scopesAllow } from "./scopes.ts";
import { openSigningKeys, type SigningKeys } from "./signing-keys.ts";

const deckError = (code: string) => (e: unknown) => isDeckError(e) && e.code === code;

describe("token scopes", () => {
  test("read only reads; deploy adds deploys (creating the app on a first push), restarts and logs; write all but admin actions; admin everything", () => {
    assert.deepEqual([...SCOPE_ACTIONS.read].sort(), ["app:read", "audit:read", "config:get"]);
    assert.deepEqual([...SCOPE_ACTIONS.deploy].sort(), ["app:create", "app:deploy", "app:logs", "app:read", "audit:read", "config:get", "ps:restart"]);
    for (const action of ["app:destroy", "billing:manage", "members:manage"] as const) {
      assert.equal(scopesAllow(["write"], action), false, action);
      assert.equal(scopesAllow(["admin"], action), true, action);
    }
    assert.equal(scopesAllow(["write"], "config:set"), true);
    assert.equal(scopesAllow(["deploy"], "config:set"), false);
    assert.equal(scopesAllow(["read"], "app:deploy"), false);
    assert.equal(scopesAllow(["read", "deploy"], "app:deploy"), true);
    assert.equal(scopesAllow([], "app:read"), false);
    assert.equal(scopesAllow(["superuser"], "app:read"), false);
  });
});

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`personal access tokens on ${backend.name} PostgreSQL`, () => {
    let tdb: TestDatabase;
    let ada: UserRow;
    let bob: UserRow;
    let keys: SigningKeys;
    before(async () => {
      tdb = await openTestDatabase(backend);
      ada = await insertUser(tdb.db.pool, { email: "ada@example.com", isAdmin: false });
      bob = await insertUser(tdb.db.pool, { email: "bob@example.com", isAdmin: false });
      keys = await openSigningKeys({ dataDir: tdb.dataDir });
    });
    after(() => tdb?.cleanup());

    test("a token is shown once, stored hashed, and verifies to its user and scopes, stamping last use", async () => {
      const created = await createPersonalToken(tdb.db.pool, { userId: ada.id, name: "ci", scopes: ["deploy", "read", "deploy"] });
      assert.match(created.token, /^deck_[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(created.scopes, ["deploy", "read"]);
      assert.equal(created.lastUsedAt, null);
      const inDays = (Date.parse(created.expiresAt!) - Date.now()) / 86_400_000;
      assert.ok(inDays > 89.9 && inDays <= 90, "expires in 90 days unless told");
      const stored = await tdb.db.pool.any(q`SELECT token_hash FROM api_tokens WHERE id = ${created.id}`);
      assert.notEqual(stored[0]!.token_hash, created.token);
      assert.ok(!JSON.stringify(stored).includes(created.token.slice(5)));

      const listed = await listPersonalTokens(tdb.db.pool, ada.id);
      assert.equal(listed.length, 1);
      assert.ok(!("token" in listed[0]!) && !JSON.stringify(listed).includes(created.token.slice(5)), "lists never show the token");
      assert.equal(listed[0]!.lastUsedAt, null);

      const verified = await verifyPersonalToken(tdb.db.pool, created.token);
      assert.deepEqual(verified, { user: ada, scopes: ["deploy", "read"], tokenId: created.id });
      const used = (await listPersonalTokens(tdb.db.pool, ada.id))[0]!;
      assert.ok(used.lastUsedAt && Math.abs(Date.parse(used.lastUsedAt) - Date.now()) < 60_000, "last use is recorded");
      assert.deepEqual(await findUserByApiToken(tdb.db.pool, created.token), ada, "git over HTTP accepts the same tokens");
      assert.equal(await verifyPersonalToken(tdb.db.pool, `${created.token}x`), null);
      assert.equal(await verifyPersonalToken(tdb.db.pool, "deck_nope"), null);
    });

    test("an expired token is refused", async () => {
      const lastWeek = Date.now() - 7 * 86_400_000;
      const expired = await createPersonalToken(tdb.db.pool, { userId: ada.id, name: "old", scopes: ["read"], expiresInDays: 1, now: lastWeek });
      assert.equal(await verifyPersonalToken(tdb.db.pool, expired.token), null);
      const forever = await createPersonalToken(tdb.db.pool, { userId: ada.id, name: "forever", scopes: ["read"], expiresInDays: null });
      assert.equal(forever.expiresAt, null);
      assert.equal((await verifyPersonalToken(tdb.db.pool, forever.token))?.tokenId, forever.id);
    });

    test("a revoked token is refused, and only its owner can revoke it", async () => {
      const created = await createPersonalToken(tdb.db.pool, { userId: ada.id, name: "laptop", scopes: ["write"] });
      await assert.rejects(revokePersonalToken(tdb.db.pool, bob.id, created.id), deckError("not_found"));
      assert.ok(await verifyPersonalToken(tdb.db.pool, created.token));
      await revokePersonalToken(tdb.db.pool, ada.id, created.id);
      assert.equal(await verifyPersonalToken(tdb.db.pool, created.token), null);
      await assert.rejects(revokePersonalToken(tdb.db.pool, ada.id, created.id), deckError("not_found"));
      const listed = (await listPersonalTokens(tdb.db.pool, ada.id)).find((t) => t.id === created.id);
      assert.ok(listed?.revokedAt);
      assert.deepEqual(await listPersonalTokens(tdb.db.pool, bob.id), []);
    });

    test("bad names, scopes and expiries are refused with a clear error", async () => {
      const create = (over: object) => createPersonalToken(tdb.db.pool, { userId: ada.id, name: "x", scopes: ["read"], ...over });
      await assert.rejects(create({ scopes: [] }), deckError("invalid_scope"));
      await assert.rejects(create({ scopes: ["read", "root"] }), (e) => deckError("invalid_scope")(e) && /"root"/.test((e as Error).message));
      await assert.rejects(create({ name: "  " }), deckError("invalid_token_name"));
      await assert.rejects(create({ expiresInDays: 0 }), deckError("invalid_expiry"));
      await assert.rejects(create({ expiresInDays: Number.NaN }), deckError("invalid_expiry"));
    });

    test("a bearer token is either a personal token or a signed access token", async () => {
      const pat = await createPersonalToken(tdb.db.pool, { userId: bob.id, name: "api", scopes: ["deploy"] });
      assert.deepEqual(await authenticateBearer({ db: tdb.db.pool, keys }, pat.token), { user: bob, scopes: ["deploy"], via: "personal_token", tokenId: pat.id });
      const jwt = await keys.signAccessToken({ userId: bob.id, scopes: ["admin"] });
      assert.deepEqual(await authenticateBearer({ db: tdb.db.pool, keys }, jwt), { user: bob, scopes: ["admin"], via: "access_token" });
      await revokePersonalToken(tdb.db.pool, bob.id, pat.id);
      await assert.rejects(authenticateBearer({ db: tdb.db.pool, keys }, pat.token), deckError("invalid_token"));
      await assert.rejects(authenticateBearer({ db: tdb.db.pool, keys }, "garbage"), deckError("invalid_token"));
      const ghost = await keys.signAccessToken({ userId: 987_654, scopes: ["admin"] });
      await assert.rejects(authenticateBearer({ db: tdb.db.pool, keys }, ghost), deckError("invalid_token"));
    });
  });
}
