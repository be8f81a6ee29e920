import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { applySlugEnv, parseSlugEnv } from "./slug-env.ts";

describe("slug env", () => {
  test("resolves slug-relative paths against where the slug runs, PATH entries first", () => {
    const parsed = parseSlugEnv(JSON.stringify({ path: [".venv/bin"], dirs: { VIRTUAL_ENV: ".venv" }, vars: { PYTHONUNBUFFERED: "1" } }));
    assert.ok(parsed.ok);
    assert.deepEqual(applySlugEnv({ PATH: "/usr/bin:/bin", HOME: "/srv/slug" }, parsed.env, "/srv/slug"), {
      PATH: "/srv/slug/.venv/bin:/usr/bin:/bin",
      HOME: "/srv/slug",
      VIRTUAL_ENV: "/srv/slug/.venv",
      PYTHONUNBUFFERED: "1",
    });
  });

  test("the app's own config vars win over the buildpack's, and its PATH still gets the buildpack's dirs in front", () => {
    const parsed = parseSlugEnv(JSON.stringify({ path: ["bin"], vars: { PYTHONUNBUFFERED: "1" } }));
    assert.ok(parsed.ok);
    const env = applySlugEnv({ PATH: "/opt/tools", PYTHONUNBUFFERED: "0" }, parsed.env, "/app");
    assert.equal(env.PYTHONUNBUFFERED, "0");
    assert.equal(env.PATH, "/app/bin:/opt/tools");
  });

  test("refuses paths that leave the slug and malformed files", () => {
    for (const text of [
      JSON.stringify({ path: ["/usr/bin"] }),
      JSON.stringify({ path: ["../other/bin"] }),
      JSON.stringify({ dirs: { VIRTUAL_ENV: "/abs" } }),
      JSON.stringify({ vars: { "BAD NAME": "x" } }),
      JSON.stringify({ vars: { X: 1 } }),
      "[]",
      "{ nope",
    ]) {
      const parsed = parseSlugEnv(text);
      assert.equal(parsed.ok, false, text);
      assert.match((parsed as { message: string }).message, /^\.deck\/env\.json/);
    }
  });
});
