import { test } from "node:test";
import assert from "node:assert/strict";
import { createBuildEnv } from "./build-env.ts";

test("the build sees PATH/HOME, the app's config vars and CI=true, but none of deck's own settings", () => {
  const env = createBuildEnv({
    host: { PATH: "/usr/bin", HOME: "/home/deck", DATABASE_URL: "postgres://secret", DECK_API_TOKEN: "t0k3n" },
    appEnv: { API_KEY: "abc", LANG: "de_DE.UTF-8" },
    cacheDir: "/data/cache/app",
  });
  assert.equal(env.PATH, "/usr/bin");
  assert.equal(env.HOME, "/home/deck");
  assert.equal(env.API_KEY, "abc");
  assert.equal(env.LANG, "de_DE.UTF-8");
  assert.equal(env.CI, "true");
  assert.equal(env.npm_config_cache, "/data/cache/app/npm");
  assert.equal(env.DATABASE_URL, undefined);
  assert.equal(env.DECK_API_TOKEN, undefined);
});

test("LANG defaults to UTF-8 and CI cannot be turned off by a config var", () => {
  const env = createBuildEnv({ host: { PATH: "/bin" }, appEnv: { CI: "false" }, cacheDir: "/c" });
  assert.equal(env.LANG, "C.UTF-8");
  assert.equal(env.CI, "true");
});
