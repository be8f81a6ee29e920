import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkoutCommit, CheckoutError } from "./checkout.ts";
import { createPushedRepo } from "./test-helpers.ts";

const root = mkdtempSync(join(tmpdir(), "deck-checkout-"));
after(() => rmSync(root, { recursive: true, force: true }));

function freshDir(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

test("writes the commit's files, and only them, into the directory", async () => {
  const repo = createPushedRepo(freshDir("plain"), { "index.html": "<h1>hi</h1>", "src/app.js": "console.log(1)\n" });
  const dir = freshDir("plain-out");
  await checkoutCommit({ repoDir: repo.repoDir, commitSha: repo.sha, dir, gitEnv: {} });
  assert.equal(readFileSync(join(dir, "index.html"), "utf8"), "<h1>hi</h1>");
  assert.equal(readFileSync(join(dir, "src/app.js"), "utf8"), "console.log(1)\n");
  assert.equal(existsSync(join(dir, ".git")), false);
});

test("an unknown commit or a malformed sha is a CheckoutError with a one-line reason", async () => {
  const repo = createPushedRepo(freshDir("unknown"), { a: "1" });
  const dir = freshDir("unknown-out");
  await assert.rejects(
    checkoutCommit({ repoDir: repo.repoDir, commitSha: "f".repeat(40), dir, gitEnv: {} }),
    (e: unknown) => e instanceof CheckoutError && e.code === "checkout_failed" && /git archive exited with code \d+: fatal/.test(e.message) && !e.message.includes("\n"),
  );
  await assert.rejects(checkoutCommit({ repoDir: repo.repoDir, commitSha: "HEAD", dir, gitEnv: {} }), /invalid commit sha "HEAD"/);
});

test("reads a pushed commit still in quarantine when given the hook's git env", async (t) => {
  // A pre-receive hook hands its quarantine env to the test, then waits until the test is done:
  // exactly the moment at which deck builds a push. The sha file appears whole (renamed into
  // place), so the test never reads it half-written.
  const repo = createPushedRepo(freshDir("quarantine"), { "README.md": "v1\n" });
  const handoff = freshDir("quarantine-handoff");
  const hook = join(repo.repoDir, "hooks", "pre-receive");
  writeFileSync(
    hook,
    `#!/bin/sh
read old new ref
env | grep -E '^GIT_(OBJECT_DIRECTORY|ALTERNATE_OBJECT_DIRECTORIES|QUARANTINE_PATH)=' > "${handoff}/env"
echo "$new" > "${handoff}/sha.part" && mv "${handoff}/sha.part" "${handoff}/sha"
while [ ! -f "${handoff}/done" ]; do sleep 0.05; done
exit 1
`,
  );
  chmodSync(hook, 0o755);
  writeFileSync(join(repo.workDir, "README.md"), "v2 in quarantine\n");
  const git = (...args: string[]) => spawn("git", ["-c", "user.name=T", "-c", "user.email=t@t.invalid", ...args], { cwd: repo.workDir, stdio: "ignore" });
  await new Promise((r) => git("commit", "-q", "-am", "v2").on("exit", r));
  const push = git("push", "-q", repo.repoDir, "HEAD:refs/heads/main");
  const pushDone = new Promise((r) => push.on("exit", r));
  t.after(() => {
    writeFileSync(join(handoff, "done"), "");
    if (push.exitCode === null) push.kill("SIGKILL");
  });
  while (!existsSync(join(handoff, "sha")) && push.exitCode === null) await new Promise((r) => setTimeout(r, 25));

  const sha = readFileSync(join(handoff, "sha"), "utf8").trim();
  const gitEnv = Object.fromEntries(
    readFileSync(join(handoff, "env"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
  assert.ok(gitEnv.GIT_QUARANTINE_PATH, "git set a quarantine path for the hook");

  await assert.rejects(checkoutCommit({ repoDir: repo.repoDir, commitSha: sha, dir: freshDir("q-without"), gitEnv: {} }), CheckoutError);
  const dir = freshDir("q-with");
  await checkoutCommit({ repoDir: repo.repoDir, commitSha: sha, dir, gitEnv });
  assert.equal(readFileSync(join(dir, "README.md"), "utf8"), "v2 in quarantine\n");

  writeFileSync(join(handoff, "done"), "");
  assert.notEqual(await pushDone, 0, "the hook rejected the push");
});
