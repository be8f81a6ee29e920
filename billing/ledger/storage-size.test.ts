import assert from "node:assert/strict";
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { listStorageDirs, measureStorage } from "./storage-size.ts";

describe("measuring an app's storage", () => {
  let dataDir: string;
  let outside: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "deck-storage-"));
    outside = await mkdtemp(join(tmpdir(), "deck-outside-"));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it("adds the repository and the artifacts, a file hard-linked twice once, and follows no symlink out of the tree", async () => {
    const [repo, artifacts] = listStorageDirs(dataDir, "web");
    const files = { [join(repo!, "objects", "ab", "cdef")]: 1234, [join(repo!, "HEAD")]: 21, [join(artifacts!, "slugs", "7", "server.js")]: 4096 };
    for (const [path, size] of Object.entries(files)) {
      await mkdir(join(path, ".."), { recursive: true });
      await writeFile(path, Buffer.alloc(size, 1));
    }
    // A pack hard-linked into a second place takes its space once.
    await link(join(repo!, "objects", "ab", "cdef"), join(repo!, "objects", "ab", "linked"));
    // Big files outside the tree, reached through symlinks to a file and to a directory: not the app's.
    await writeFile(join(outside, "big"), Buffer.alloc(1_000_000));
    await symlink(join(outside, "big"), join(artifacts!, "big-link"));
    await symlink(outside, join(artifacts!, "dir-link"));
    // Another app's files are not this one's.
    await mkdir(join(dataDir, "apps", "web-2"), { recursive: true });
    await writeFile(join(dataDir, "apps", "web-2", "x"), Buffer.alloc(500));

    const expected = Object.values(files).reduce((a, b) => a + b, 0);
    assert.equal(await measureStorage(listStorageDirs(dataDir, "web")), expected);
  });

  it("takes an app with nothing on disk yet as empty", async () => {
    assert.equal(await measureStorage(listStorageDirs(dataDir, "never-pushed")), 0);
  });
});
