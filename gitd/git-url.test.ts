import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseGitHttpRequest } from "./git-url.ts";

describe("smart HTTP git URLs", () => {
  it("reads the app, endpoint and service of the URLs git sends", () => {
    assert.deepEqual(parseGitHttpRequest("GET", "/git/myapp.git/info/refs?service=git-receive-pack"), { ok: true, app: "myapp", endpoint: "info/refs", service: "receive-pack" });
    assert.deepEqual(parseGitHttpRequest("GET", "/git/myapp/info/refs?service=git-upload-pack"), { ok: true, app: "myapp", endpoint: "info/refs", service: "upload-pack" });
    assert.deepEqual(parseGitHttpRequest("POST", "/git/my-app.git/git-receive-pack"), { ok: true, app: "my-app", endpoint: "git-receive-pack", service: "receive-pack" });
    assert.deepEqual(parseGitHttpRequest("POST", "/git/my%61pp.git/git-upload-pack"), { ok: true, app: "myapp", endpoint: "git-upload-pack", service: "upload-pack" });
  });
  it("answers every malformed URL with one line: 400, or 405 for a wrong method", () => {
    const table: [string, string, number, RegExp][] = [
      ["GET", "/git/%/info/refs?service=git-upload-pack", 400, /bad percent-encoding/],
      ["GET", "/git/%E0%A4%A/info/refs?service=git-upload-pack", 400, /bad percent-encoding/],
      ["GET", "/git/../info/refs?service=git-upload-pack", 400, /names a path, not an app/],
      ["GET", "/git/%2e%2e/info/refs?service=git-upload-pack", 400, /names a path, not an app/],
      ["GET", "/git/a%2Fb.git/info/refs?service=git-upload-pack", 400, /names a path, not an app/],
      ["GET", "/git/a/b.git/info/refs?service=git-upload-pack", 400, /not a smart HTTP git URL/],
      ["GET", "/git/app%00.git/info/refs?service=git-upload-pack", 400, /control characters/],
      ["GET", `/git/${"a".repeat(64)}.git/info/refs?service=git-upload-pack`, 400, /invalid app name .*1-63 lowercase/],
      ["GET", `/git/${"a".repeat(2000)}/info/refs`, 400, /longer than 1024 characters/],
      ["GET", "/git/UPPER.git/info/refs?service=git-upload-pack", 400, /invalid app name/],
      ["GET", "/git/.git/info/refs?service=git-upload-pack", 400, /invalid app name/],
      ["GET", "/git/app.git/info/refs?service=git-evil", 400, /smart HTTP only/],
      ["GET", "/git/app.git/info/refs", 400, /smart HTTP only/],
      ["GET", "/git/app.git/HEAD", 400, /not a smart HTTP git URL/],
      ["GET", "/git/app.git/objects/info/packs", 400, /not a smart HTTP git URL/],
      ["GET", "/git/", 400, /not a smart HTTP git URL/],
      ["POST", "/git/app.git/info/refs?service=git-upload-pack", 405, /info\/refs takes GET/],
      ["GET", "/git/app.git/git-receive-pack", 405, /git-receive-pack takes POST/],
      ["PUT", "/git/app.git/git-upload-pack", 405, /git-upload-pack takes POST/],
    ];
    for (const [method, url, status, message] of table) {
      const r = parseGitHttpRequest(method, url);
      assert.equal(r.ok, false, url);
      if (r.ok) continue;
      assert.equal(r.status, status, url);
      assert.match(r.message, message, url);
      assert.match(r.message, /^deck: [^\n]+$/, url);
    }
  });
});
