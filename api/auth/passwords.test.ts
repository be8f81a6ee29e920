import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isDeckError } from "../../core/errors.ts";
import { checkPasswordPolicy, hashPassword, verifyPassword } from "./passwords.ts";

describe("passwords", () => {
  test("hashes with argon2id and verifies only the right password", async () => {
    const hash = await hashPassword("correct horse battery");
    assert.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.ok(!hash.includes("correct horse"));
    assert.equal(await verifyPassword(hash, "correct horse battery"), true);
    assert.equal(await verifyPassword(hash, "correct horse batterY"), false);
    assert.equal(await verifyPassword(hash, ""), false);
    assert.notEqual(await hashPassword("correct horse battery"), hash, "each hash has its own salt");
  });

  test("the policy refuses short passwords and the email, with one clear line", () => {
    const weak = (password: string, email = "ada@example.com") =>
      assert.throws(() => checkPasswordPolicy(password, email), (e) => isDeckError(e) && e.code === "weak_password" && !e.message.includes("\n"));
    weak("short1234");
    weak("ada@example.com");
    weak("ADA@EXAMPLE.COM");
    weak("adalovelace", "adalovelace@example.com");
    weak("aaaaaaaaaaaaaa");
    weak("x".repeat(2000));
    assert.throws(() => checkPasswordPolicy("short", "a@b.c"), /at least 10 characters/);
    checkPasswordPolicy("ten chars!", "ada@example.com");
    checkPasswordPolicy("a long passphrase with spaces", "ada@example.com");
  });
});
