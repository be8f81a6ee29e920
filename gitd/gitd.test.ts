import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gitServiceArgv, parseGitCommand } from "./git-process.ts";
import { pktLine } from "./http-git.ts";
import { parseRefUpdates, planPush } from "./ref-updates.ts";
import { hookScript } from "./repos.ts";
import { splitShellWords } from "./shell-words.ts";

const A = "a".repeat(40);
const B = "b".repeat(40);
const Z = "0".repeat(40);

describe("git commands over SSH", () => {
  it("recognises the two git services and nothing else", () => {
    assert.deepEqual(parseGitCommand("git-receive-pack '/myapp.git'"), { service: "receive-pack", path: "/myapp.git" });
    assert.deepEqual(parseGitCommand("git-upload-pack 'myapp'"), { service: "upload-pack", path: "myapp" });
    assert.deepEqual(parseGitCommand("git upload-pack '/x'"), { service: "upload-pack", path: "/x" });
    assert.equal(parseGitCommand("git-upload-archive 'x'"), null);
    assert.equal(parseGitCommand("rm -rf /"), null);
  });
  it("builds argv arrays, never shell strings", () => {
    assert.deepEqual(gitServiceArgv("receive-pack", "/d/a.git", { statelessRpc: true, advertiseRefs: true }), ["git", "receive-pack", "--stateless-rpc", "--advertise-refs", "/d/a.git"]);
  });
  it("gives receive-pack the push size limit, and upload-pack none", () => {
    assert.deepEqual(gitServiceArgv("receive-pack", "/d/a.git", { maxPackBytes: 1024 ** 3 }), ["git", "-c", "receive.maxInputSize=1073741824", "receive-pack", "/d/a.git"]);
    assert.deepEqual(gitServiceArgv("receive-pack", "/d/a.git", { maxPackBytes: 0 }), ["git", "receive-pack", "/d/a.git"]);
    assert.deepEqual(gitServiceArgv("upload-pack", "/d/a.git", { statelessRpc: true, maxPackBytes: 5 }), ["git", "upload-pack", "--stateless-rpc", "/d/a.git"]);
  });
  it("frames pkt-lines", () => {
    assert.equal(pktLine("# service=git-upload-pack\n").toString(), "001e# service=git-upload-pack\n");
  });
  it("quotes paths in the hook script", () => {
    assert.match(hookScript("/usr/bin/node", "/tmp/it's/hooks.sock"), /'\/tmp\/it'\\''s\/hooks\.sock'/);
  });
});

describe("which ref deploys", () => {
  it("deploys main, or master when main is not pushed; stores other branches", () => {
    const plan = planPush(parseRefUpdates([`${A} ${B} refs/heads/feature`, `${A} ${B} refs/heads/main`]));
    assert.equal(plan.kind, "deploy");
    if (plan.kind === "deploy") {
      assert.equal(plan.update.ref, "refs/heads/main");
      assert.deepEqual(plan.ignored.map((u) => u.ref), ["refs/heads/feature"]);
    }
    const master = planPush(parseRefUpdates([`${Z} ${B} refs/heads/master`]));
    assert.equal(master.kind === "deploy" && master.update.ref, "refs/heads/master");
    assert.equal(planPush(parseRefUpdates([`${A} ${B} refs/heads/dev`])).kind, "store-only");
    assert.equal(planPush(parseRefUpdates([`${A} ${Z} refs/heads/main`])).kind, "reject");
    assert.deepEqual(parseRefUpdates(["garbage", `${A} nothex refs/heads/main`]), []);
  });

  it("refuses a push to deck's own refs/deck/ (where waiting pushes keep their commits)", () => {
    const plan = planPush(parseRefUpdates([`${A} ${B} refs/heads/main`, `${Z} ${B} refs/deck/queued/7`]));
    assert.deepEqual(plan, { kind: "reject", message: "refs/deck/queued/7 is in refs/deck/, which deck keeps for itself; push branches or tags" });
  });
});

describe("command line words", () => {
  it("splits like a shell without expanding anything", () => {
    assert.deepEqual(splitShellWords(`config:set app A="hello world" B='x y' C=a\\ b D=$HOME`), ["config:set", "app", "A=hello world", "B=x y", "C=a b", "D=$HOME"]);
    assert.deepEqual(splitShellWords(`x ''`), ["x", ""]);
    assert.equal(splitShellWords(`x "unbalanced`), null);
  });
});
