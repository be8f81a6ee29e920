import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { base64url, calculateJwkThumbprint, decodeProtectedHeader, exportJWK, SignJWT } from "jose";
import { isDeckError } from "../../core/errors.ts";
import { keysDir, openSigningKeys, type SigningKeys } from "./signing-keys.ts";

const rejected = (reason: RegExp) => (e: unknown) => {
  assert.ok(isDeckError(e), `expected a DeckError, got ${e}`);
  assert.equal(e.code, "invalid_token");
  assert.match(e.message, reason);
  assert.ok(!e.message.includes("\n"));
  return true;
};

const encode = (v: object) => base64url.encode(JSON.stringify(v));

describe("signing keys and access tokens", () => {
  let dataDir: string;
  let keys: SigningKeys;
  let t = Date.parse("2025-06-01T12:00:00Z");
  const now = () => t;
  const claims = () => ({ iss: "clouddeck", aud: "clouddeck", sub: "7", scope: "admin", iat: Math.floor(t / 1000), exp: Math.floor(t / 1000) + 600 });

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "deck-keys-"));
    keys = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  test("the key pair is generated once into the data dir, private key readable by the owner only", async () => {
    const kid = keys.currentKid;
    const dir = keysDir(dataDir);
    assert.equal((await stat(join(dir, `${kid}.private.pem`))).mode & 0o777, 0o600);
    assert.ok((await stat(join(dir, `${kid}.public.pem`))).isFile());
    const again = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
    assert.equal(again.currentKid, kid, "reopening keeps the key");
    const jwks = keys.jwks();
    assert.equal(jwks.keys.length, 1);
    assert.deepEqual(Object.keys(jwks.keys[0]!).sort(), ["alg", "crv", "kid", "kty", "use", "x"], "the JWKS has no private part");
    assert.equal(jwks.keys[0]!.kid, await calculateJwkThumbprint(jwks.keys[0]!));
  });

  test("a signed token verifies, on another instance too, and gives back user, scopes, kid and expiry", async () => {
    const token = await keys.signAccessToken({ userId: 42, scopes: ["read", "deploy"] });
    const header = decodeProtectedHeader(token);
    assert.deepEqual(header, { alg: "EdDSA", kid: keys.currentKid, typ: "at+jwt" });
    const expected = { userId: 42, scopes: ["read", "deploy"], kid: keys.currentKid, exp: Math.floor(t / 1000) + 900 };
    assert.deepEqual(await keys.verifyAccessToken(token), expected);
    const other = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
    assert.deepEqual(await other.verifyAccessToken(token), expected);
  });

  test("an expired token is rejected", async () => {
    const token = await keys.signAccessToken({ userId: 1, scopes: ["read"], ttlSeconds: 60 });
    t += 61_000;
    await assert.rejects(keys.verifyAccessToken(token), rejected(/expired/));
  });

  test("alg none is rejected, even naming a real kid", async () => {
    const token = `${encode({ alg: "none", typ: "at+jwt", kid: keys.currentKid })}.${encode(claims())}.`;
    await assert.rejects(keys.verifyAccessToken(token), rejected(/algorithm "none" is not accepted/));
    const noKid = `${encode({ alg: "none" })}.${encode(claims())}.`;
    await assert.rejects(keys.verifyAccessToken(noKid), rejected(/algorithm/));
  });

  test("an HS256 token keyed with the public key bytes is rejected", async () => {
    const publicPem = await readFile(join(keysDir(dataDir), `${keys.currentKid}.public.pem`));
    const publicRaw = base64url.decode(keys.jwks().keys[0]!.x!);
    for (const secret of [new Uint8Array(publicPem), publicRaw]) {
      const token = await new SignJWT(claims()).setProtectedHeader({ alg: "HS256", kid: keys.currentKid, typ: "at+jwt" }).sign(secret);
      await assert.rejects(keys.verifyAccessToken(token), rejected(/algorithm "HS256" is not accepted/));
    }
  });

  test("a token signed by another Ed25519 key is rejected, under our kid or its own", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const sameKid = await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", kid: keys.currentKid, typ: "at+jwt" }).sign(privateKey);
    await assert.rejects(keys.verifyAccessToken(sameKid), rejected(/signature does not verify/));
    const ownKid = await calculateJwkThumbprint(await exportJWK(publicKey));
    const foreign = await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", kid: ownKid, typ: "at+jwt" }).sign(privateKey);
    await assert.rejects(keys.verifyAccessToken(foreign), rejected(/unknown key/));
    const noKid = await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt" }).sign(privateKey);
    await assert.rejects(keys.verifyAccessToken(noKid), rejected(/no signing key/));
  });

  test("a tampered payload is rejected", async () => {
    const token = await keys.signAccessToken({ userId: 5, scopes: ["read"] });
    const [h, , s] = token.split(".");
    const forged = `${h}.${encode({ ...claims(), sub: "1", scope: "admin" })}.${s}`;
    await assert.rejects(keys.verifyAccessToken(forged), rejected(/signature does not verify/));
  });

  test("our own key with the wrong issuer, audience or type is rejected", async () => {
    const privateKey = createPrivateKey(await readFile(join(keysDir(dataDir), `${keys.currentKid}.private.pem`), "utf8"));
    const sign = (body: object, typ = "at+jwt") => new SignJWT({ ...body }).setProtectedHeader({ alg: "EdDSA", kid: keys.currentKid, typ }).sign(privateKey);
    assert.equal((await keys.verifyAccessToken(await sign(claims()))).userId, 7, "the hand-made token is otherwise valid");
    await assert.rejects(keys.verifyAccessToken(await sign({ ...claims(), iss: "someone-else" })), rejected(/"iss"/));
    await assert.rejects(keys.verifyAccessToken(await sign({ ...claims(), aud: "another-service" })), rejected(/"aud"/));
    await assert.rejects(keys.verifyAccessToken(await sign(claims(), "JWT")), rejected(/"typ"/));
    await assert.rejects(keys.verifyAccessToken(await sign({ ...claims(), sub: "root" })), rejected(/subject/));
  });

  test("malformed tokens are rejected", async () => {
    for (const token of ["", "abc", "a.b.c", `${encode({ alg: "EdDSA", kid: keys.currentKid })}..`, `${encode({ alg: "EdDSA", kid: keys.currentKid })}.not-json.sig`]) {
      await assert.rejects(keys.verifyAccessToken(token), rejected(/malformed|signature/), token);
    }
  });

  test("rotation: new tokens use the new kid, old tokens verify until the old key's retention ends", async () => {
    const oldKid = keys.currentKid;
    const oldToken = await keys.signAccessToken({ userId: 3, scopes: ["read"], ttlSeconds: 3600 });
    const { kid: newKid } = await keys.rotate();
    assert.notEqual(newKid, oldKid);
    assert.equal(keys.currentKid, newKid);
    const newToken = await keys.signAccessToken({ userId: 3, scopes: ["read"] });
    assert.equal(decodeProtectedHeader(newToken).kid, newKid);
    assert.equal((await keys.verifyAccessToken(oldToken)).kid, oldKid);
    assert.equal((await keys.verifyAccessToken(newToken)).kid, newKid);
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid).sort(), [oldKid, newKid].sort());
    const files = await readdir(keysDir(dataDir));
    assert.ok(!files.includes(`${oldKid}.private.pem`), "a retired key cannot sign any more");
    assert.ok(files.includes(`${oldKid}.public.pem`));

    // Another process sharing the data dir picks up the rotation when it meets the new kid.
    const reopened = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
    assert.equal(reopened.currentKid, newKid);
    assert.equal((await reopened.verifyAccessToken(oldToken)).userId, 3);

    t += 3600_000 + 1000;
    assert.deepEqual(keys.jwks().keys.map((k) => k.kid), [newKid], "the retired key leaves the JWKS after retention");
    await keys.rotate();
    assert.ok(!(await readdir(keysDir(dataDir))).some((f) => f.startsWith(oldKid)), "and its files go at the next rotation");
  });

  test("an instance that did not rotate verifies the new kid after another one rotated", async () => {
    const a = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
    const b = await openSigningKeys({ dataDir, now, retentionSeconds: 3600 });
    await a.rotate();
    const token = await a.signAccessToken({ userId: 9, scopes: ["read"] });
    assert.equal((await b.verifyAccessToken(token)).userId, 9);
  });

  test("a token may not outlive the key retention", async () => {
    await assert.rejects(keys.signAccessToken({ userId: 1, scopes: [], ttlSeconds: 3601 }), RangeError);
  });
});
