import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { appNameFromRepoPath, checkAppName, decide, parseProcfile, runnableTypes, type Actor } from "./index.ts";

describe("app names", () => {
  it("accepts the names users type in remotes", () => {
    for (const p of ["myapp", "/myapp", "myapp.git", "/myapp.git", "'/myapp.git'"]) assert.deepEqual(appNameFromRepoPath(p), { ok: true, name: "myapp" });
  });
  it("refuses anything that could reach another path, with one line", () => {
    for (const bad of ["../x", "/etc/passwd", "a/b", "x'y", "A", "1abc", "-a", "", "a".repeat(64), "a b", "a\nb", "..", "a.b"]) {
      const r = appNameFromRepoPath(bad);
      assert.equal(r.ok, false, bad);
      if (!r.ok) assert.doesNotMatch(r.message, /\n/);
    }
    assert.equal(checkAppName("a".repeat(63)).ok, true);
  });
});

describe("Procfile", () => {
  it("parses types and commands, skipping comments and junk", () => {
    const p = parseProcfile("# comment\nweb: node server.js --port $PORT\nworker:   node worker.js\nrelease: npm run migrate\nnot a line\n\n");
    assert.deepEqual(p, { web: "node server.js --port $PORT", worker: "node worker.js", release: "npm run migrate" });
    assert.deepEqual(runnableTypes(p), ["web", "worker"]);
  });
});

describe("policy", () => {
  const actor = (role: "owner" | "admin" | "member" | "viewer"): Actor => ({ userId: 1, isAdmin: false, roles: new Map([[7, role]]) });
  it("grants by role within the app's organisation only", () => {
    assert.deepEqual(decide(actor("viewer"), "app:read", 7), { allow: true });
    assert.deepEqual(decide(actor("viewer"), "app:deploy", 7), { allow: false, missing: "app:deploy" });
    assert.deepEqual(decide(actor("member"), "app:deploy", 7), { allow: true });
    assert.deepEqual(decide(actor("member"), "config:set", 7), { allow: false, missing: "config:set" });
    assert.deepEqual(decide(actor("admin"), "ps:scale", 7), { allow: true });
    assert.deepEqual(decide(actor("admin"), "app:destroy", 7), { allow: false, missing: "app:destroy" });
    assert.deepEqual(decide(actor("owner"), "app:destroy", 7), { allow: true });
    assert.deepEqual(decide(actor("owner"), "app:read", 8), { allow: false, missing: "app:read" });
    assert.deepEqual(decide({ userId: 2, isAdmin: true, roles: new Map() }, "app:destroy", 8), { allow: true });
  });
});
