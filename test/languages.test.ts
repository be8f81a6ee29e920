/**
 * Python, Go and Rust apps pushed with real git to a real deck server, built by their buildpacks,
 * run by the process runtime and served through the router.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GO_APP, PYTHON_APP, RUST_APP } from "./helpers/sample-apps.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { Deck, makeRepo } from "./helpers/deck.ts";

// One backend is enough: nothing here depends on how PostgreSQL is run (the queue and node suites run both).
const backends = embeddedBackendOnly();

for (const backend of backends) {
  describe(`Python, Go and Rust apps deploy and serve (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-langs-"));
      deck = await Deck.start({ backend });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("deploys a Python app into its own virtualenv", async () => {
      const push = await deck.push(await makeRepo(join(work, "py"), PYTHON_APP), "py");
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Python app detected/);
      assert.match(push.stderr, /remote: -----> Installing dependencies \(pip install -r requirements\.txt\)/);
      assert.match(push.stderr, /remote: +Default types for buildpack -> web/);
      const res = await deck.get("py");
      assert.equal(res.status, 200);
      // The process runs with the release's virtualenv first on PATH.
      assert.match(res.body, /^python says hi from \/.+\/\.venv\n$/);
    });

    it("builds with the buildpack chosen by builder:set instead of the detected one", async () => {
      // package.json would make this a Node.js app; the app's setting says Python.
      const files = { ...PYTHON_APP, "package.json": JSON.stringify({ name: "x", version: "1.0.0", scripts: { start: "node -e 1" } }) };
      const repo = await makeRepo(join(work, "chosen"), files);
      assert.equal((await deck.ssh("apps:create chosen")).code, 0);
      const set = await deck.ssh("builder:set chosen python");
      assert.equal(set.code, 0, set.stderr);
      assert.match((await deck.ssh("ps:report chosen")).stdout, /Builder:\s+python/);
      const push = await deck.push(repo, "chosen");
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Python app detected/);
      assert.match((await deck.get("chosen")).body, /^python says hi/);
      const bad = await deck.ssh("builder:set chosen cobol");
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /"cobol" is not a builder; use one of/);
    });

    it("deploys a Go app", async () => {
      const push = await deck.push(await makeRepo(join(work, "goweb"), GO_APP), "goweb");
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Go app detected/);
      assert.deepEqual(await deck.get("goweb").then((r) => [r.status, r.body]), [200, "go says hi\n"]);
    });

    it("deploys a Rust app", async () => {
      const push = await deck.push(await makeRepo(join(work, "rustweb"), RUST_APP), "rustweb");
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stderr, /remote: -----> Rust app detected/);
      assert.match(push.stderr, /remote: +Compiling rustweb v0\.1\.0/);
      assert.deepEqual(await deck.get("rustweb").then((r) => [r.status, r.body]), [200, "rust says hi\n"]);
    });
  });
}
