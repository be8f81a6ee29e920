import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { formatHeader, type Buildpack } from "./buildpack.ts";
import { readProcfile, repoEntryExists, writeRepoFile } from "./repo-file.ts";

const SERVER_SOURCE = fileURLToPath(new URL("./static/server.mjs", import.meta.url));

/** Where the file server lands inside the slug; the `.deck` dir is never served. */
export const STATIC_SERVER_PATH = ".deck/static-server.mjs";
export const STATIC_WEB_COMMAND = `node ${STATIC_SERVER_PATH}`;

/** A plain site: the slug gets a dependency-free file server so it runs like any other web process. */
export const staticBuildpack: Buildpack = {
  name: "static",
  label: "Static site",
  looksFor: "index.html (static site)",

  async detect(dir) {
    return (await repoEntryExists(dir, "index.html")) && !(await repoEntryExists(dir, "package.json"));
  },

  async build(ctx) {
    ctx.onLine(formatHeader("Adding the static file server"));
    // A repository may commit `.deck` as a link: the write never goes through it.
    await writeRepoFile(ctx.dir, STATIC_SERVER_PATH, await readFile(SERVER_SOURCE));
  },

  async release(dir) {
    // A Procfile may add workers or replace the server; web defaults to the built-in one.
    return { web: STATIC_WEB_COMMAND, ...(await readProcfile(dir)) };
  },
};
