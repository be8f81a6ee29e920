import { test } from "node:test";
import assert from "node:assert/strict";
import { gitArchiveArgv, isCommitSha, shortSha, tarExtractArgv } from "./commands.ts";

const SHA = "0123456789abcdef0123456789abcdef01234567";

test("git archive writes one commit as a tar stream", () => {
  assert.deepEqual(gitArchiveArgv("/data/repos/my app.git", SHA), ["git", "--git-dir=/data/repos/my app.git", "archive", "--format=tar", SHA]);
});

test("tar extracts stdin into the directory", () => {
  assert.deepEqual(tarExtractArgv("/tmp/build dir"), ["tar", "-x", "-f", "-", "-C", "/tmp/build dir"]);
});

test("only a full 40-hex sha is accepted", () => {
  assert.equal(isCommitSha(SHA), true);
  for (const bad of ["", SHA.slice(0, 39), SHA + "0", SHA.toUpperCase(), "--output=/etc/passwd", `${SHA.slice(0, 39)}g`, "HEAD"]) {
    assert.equal(isCommitSha(bad), false, bad);
  }
  assert.throws(() => gitArchiveArgv("/r.git", "--remote=evil"), /not a 40-hex commit sha/);
});

test("short sha is the first 7 characters", () => {
  assert.equal(shortSha(SHA), "0123456");
});
