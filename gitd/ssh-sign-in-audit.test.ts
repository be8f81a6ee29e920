import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SshSignInAttempts } from "./ssh-sign-in-audit.ts";

describe("failed SSH sign-ins for the audit log", () => {
  it("writes nothing for a connection that only probed (method none) or never tried", () => {
    assert.equal(new SshSignInAttempts().entry("192.0.2.1"), null);
  });

  it("writes one entry per connection, reporting the attempt that says most about who it was, not against the key's owner", () => {
    const a = new SshSignInAttempts();
    a.note("deck", { reason: "method_refused", method: "password" });
    a.note("deck", { reason: "unknown_key", fingerprint: "SHA256:one" });
    a.note("deck", { reason: "bad_signature", userId: 7, email: "kim@example.com", fingerprint: "SHA256:two" });
    a.note("deck", { reason: "unknown_key", fingerprint: "SHA256:three" });
    assert.deepEqual(a.entry("192.0.2.1"), {
      userId: null, action: "auth:sign-in", target: "key:SHA256:two", sourceIp: "192.0.2.1", result: "failed",
      data: { via: "ssh", reason: "bad_signature", username: "deck", fingerprint: "SHA256:two", keysOffered: 3, keyOwner: "kim@example.com" },
    });
  });

  it("names an unknown key by its fingerprint, and a refused method by its name", () => {
    const keys = new SshSignInAttempts();
    keys.note("git", { reason: "unknown_key", fingerprint: "SHA256:one" });
    assert.deepEqual(keys.entry(null), {
      userId: null, action: "auth:sign-in", target: "key:SHA256:one", sourceIp: null, result: "failed",
      data: { via: "ssh", reason: "unknown_key", username: "git", fingerprint: "SHA256:one", keysOffered: 1 },
    });
    const password = new SshSignInAttempts();
    password.note("root", { reason: "method_refused", method: "password" });
    assert.deepEqual(password.entry("192.0.2.9")?.data, { via: "ssh", reason: "method_refused", username: "root", method: "password" });
    assert.equal(password.entry("192.0.2.9")?.target, "ssh");
  });
});
