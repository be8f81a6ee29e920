/**
 * The run-time env a build left in its slug (`.deck/env.json`) is read by the deck server before it
 * starts the app; the slug was written by the tenant's build, so the file is never read through a link.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { EMPTY_SLUG_ENV, isDeckError, SLUG_ENV_FILE } from "../core/index.ts";
import { readSlugEnv } from "./activate.ts";

const root = mkdtempSync(join(tmpdir(), "deck-slug-env-"));
after(() => rmSync(root, { recursive: true, force: true }));

function slug(setup: (file: string) => void): string {
  const dir = mkdtempSync(join(root, "slug-"));
  mkdirSync(dirname(join(dir, SLUG_ENV_FILE)), { recursive: true });
  setup(join(dir, SLUG_ENV_FILE));
  return dir;
}

describe("readSlugEnv", () => {
  it("reads the env a buildpack wrote, and none when there is no file", async () => {
    const dir = slug((file) => writeFileSync(file, JSON.stringify({ path: [".venv/bin"], dirs: { VIRTUAL_ENV: ".venv" }, vars: { PYTHONUNBUFFERED: "1" } })));
    assert.deepEqual(await readSlugEnv(dir), { path: [".venv/bin"], dirs: { VIRTUAL_ENV: ".venv" }, vars: { PYTHONUNBUFFERED: "1" } });
    assert.deepEqual(await readSlugEnv(slug(() => undefined)), EMPTY_SLUG_ENV);
  });

  it("refuses an env file the build replaced with a link, showing nothing of its target", async () => {
    // Valid slug env JSON on purpose: followed, it would be accepted and its vars given to the app.
    const target = join(root, "elsewhere.json");
    writeFileSync(target, JSON.stringify({ vars: { STOLEN: "host-file-content" } }));
    const dir = slug((file) => symlinkSync(target, file));
    await assert.rejects(readSlugEnv(dir), (e: unknown) => {
      assert.ok(isDeckError(e), String(e));
      assert.equal(e.code, "bad_slug");
      assert.match(e.message, /^the build's run-time env is unusable: \.deck\/env\.json is a symbolic link/);
      assert.ok(!e.message.includes("host-file-content"));
      return true;
    });
  });

  it("refuses a link anywhere on the way (.deck itself)", async () => {
    const elsewhere = mkdtempSync(join(root, "other-"));
    mkdirSync(join(elsewhere, "x"));
    writeFileSync(join(elsewhere, "env.json"), "{}");
    const dir = mkdtempSync(join(root, "slug-"));
    symlinkSync(elsewhere, join(dir, ".deck"));
    await assert.rejects(readSlugEnv(dir), /\.deck is a symbolic link/);
  });
});
