/**
 * Files of a checkout or slug that the deck server itself reads (as root) are never read through a
 * symbolic link: a Dockerfile, .dockerignore or image reference committed or planted as a link to a
 * host file is refused, and nothing of that file reaches the pusher.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IMAGE_REF_FILE, type BuildRequest, type BuildResult } from "../core/index.ts";
import { createDockerClient } from "../runtime/docker-client.ts";
import { runBuild } from "./build.ts";
import { readImageRef } from "./docker-build.ts";
import { createPushedRepo, type PushedRepoOptions } from "./test-helpers.ts";

const root = mkdtempSync(join(tmpdir(), "deck-build-links-"));
after(() => rmSync(root, { recursive: true, force: true }));
const SECRET = "deck-host-secret-7f3a";
const secretFile = join(root, "host-secret");
writeFileSync(secretFile, `FROM ${SECRET}\nARG ${SECRET}\n`);
let count = 0;

/** A Dockerfile build under the docker runtime; these refusals come before the engine is asked anything. */
async function build(files: Record<string, string>, repoOptions: PushedRepoOptions): Promise<{ result: BuildResult; text: string; req: BuildRequest }> {
  const dir = join(root, `case-${++count}`);
  mkdirSync(dir);
  const repo = createPushedRepo(dir, files, repoOptions);
  const lines: string[] = [];
  const req: BuildRequest = {
    app: "links", commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {}, slugDir: join(dir, "slugs", "1"), cacheDir: join(dir, "cache"),
    env: { [SECRET]: "x" }, timeoutMs: 60_000, onLine: (line) => lines.push(line),
  };
  const result = await runBuild(req, { runtime: "docker", engine: createDockerClient(), baseImage: "deck-base:none" });
  return { result, text: lines.join("\n"), req };
}

describe("files the deck server reads from a Dockerfile app", () => {
  test("a Dockerfile committed as a link to a host file is refused, naming the Dockerfile", async () => {
    const run = await build({ "server.js": "" }, { links: { Dockerfile: secretFile } });
    assert.equal(run.result.ok, false);
    assert.equal(!run.result.ok && run.result.code, "build_failed");
    assert.match(!run.result.ok ? run.result.message : "", /^Dockerfile is a symbolic link; deck never follows links/);
    assert.ok(!run.text.includes(SECRET) && !(!run.result.ok && run.result.message.includes(SECRET)), "nothing of the linked file is shown");
  });

  test("a .dockerignore committed as a link is refused before the engine's client reads it", async () => {
    const run = await build({ Dockerfile: "FROM scratch\n" }, { links: { ".dockerignore": secretFile } });
    assert.equal(run.result.ok, false);
    assert.match(!run.result.ok ? run.result.message : "", /^\.dockerignore is a symbolic link; deck never follows links/);
  });
});

describe("the image reference in an artifact dir", () => {
  test("is read as deck wrote it, and a link planted in its place counts as no image", async () => {
    const slug = mkdtempSync(join(root, "slug-"));
    const ref = { image: "sha256:feed", tag: "deck/a:build-1" };
    writeFileSync(join(slug, IMAGE_REF_FILE), JSON.stringify(ref));
    assert.deepEqual(await readImageRef(slug), ref);

    const planted = mkdtempSync(join(root, "slug-"));
    const elsewhere = join(root, "other-ref.json");
    writeFileSync(elsewhere, JSON.stringify({ image: "sha256:other-apps-image", tag: "deck/b:build-1" }));
    symlinkSync(elsewhere, join(planted, IMAGE_REF_FILE));
    assert.equal(await readImageRef(planted), undefined);
  });
});
