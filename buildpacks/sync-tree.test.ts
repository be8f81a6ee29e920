import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { SYNC_TREE_PROGRAM, syncTree, syncTreeArgv } from "./sync-tree.ts";
import { createSampleDirs, createTestContext } from "./test-helpers.ts";

const samples = createSampleDirs("deck-sync-tree-");
after(() => samples.remove());

describe("syncTree", () => {
  test("is one build command: deck's node running the sync program on both trees", () => {
    assert.deepEqual(syncTreeArgv("/usr/bin/node", "/c/.build-1", "/c/go/src", [".git"]), ["/usr/bin/node", "-e", SYNC_TREE_PROGRAM, "/c/.build-1", "/c/go/src", ".git"]);
  });

  test("copies what changed with a new mtime, keeps unchanged files' mtime, and removes what is gone", async () => {
    const from = samples.make({ "main.go": "package main\n", "lib/a.go": "a\n", "lib/b.go": "b v2\n", ".git/HEAD": "ref\n" });
    symlinkSync("lib/a.go", join(from, "link.go"));
    const to = join(samples.root, "copy");
    const ctx = createTestContext(from, { cacheDir: samples.cache() });
    mkdirSync(join(to, "lib"), { recursive: true });
    mkdirSync(join(to, "stale-dir"));
    writeFileSync(join(to, "lib", "a.go"), "a\n");
    writeFileSync(join(to, "lib", "b.go"), "b v1\n");
    writeFileSync(join(to, "stale.go"), "old\n");
    const past = new Date("2020-01-01T00:00:00Z");
    for (const f of ["lib/a.go", "lib/b.go"]) utimesSync(join(to, f), past, past);
    // The checkout stamps the commit's time: older than the previous build's outputs.
    utimesSync(join(from, "lib", "b.go"), past, past);

    await syncTree(ctx, from, to, [".git"]);
    assert.equal(readFileSync(join(to, "main.go"), "utf8"), "package main\n");
    assert.equal(readFileSync(join(to, "lib", "b.go"), "utf8"), "b v2\n");
    assert.equal(statSync(join(to, "lib", "a.go")).mtime.getTime(), past.getTime(), "an unchanged file keeps its mtime");
    assert.ok(statSync(join(to, "lib", "b.go")).mtime.getTime() > past.getTime(), "a changed file is newer than the last build");
    assert.equal(readlinkSync(join(to, "link.go")), "lib/a.go", "a link is copied as a link");
    assert.equal(existsSync(join(to, "stale.go")) || existsSync(join(to, "stale-dir")) || existsSync(join(to, ".git")), false);
  });

  test("replaces a link left in the copy by a directory of the source, without touching the link's target", async () => {
    const from = samples.make({ "pkg/x.go": "x\n" });
    const outside = samples.make({ "keep.txt": "keep\n" });
    const to = join(samples.root, "copy-2");
    mkdirSync(to);
    symlinkSync(outside, join(to, "pkg"));
    await syncTree(createTestContext(from, { cacheDir: samples.cache() }), from, to);
    assert.ok(lstatSync(join(to, "pkg")).isDirectory());
    assert.equal(readFileSync(join(outside, "keep.txt"), "utf8"), "keep\n");
    assert.equal(existsSync(join(outside, "x.go")), false);
    rmSync(to, { recursive: true, force: true });
  });
});
