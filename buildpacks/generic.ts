import { join } from "node:path";
import { runnableTypes } from "../core/index.ts";
import { BuildStepError, fileExists, formatDetail, readProcfile, type Buildpack } from "./buildpack.ts";

/** Any app that says how to run itself in a Procfile; nothing is built. */
export const genericBuildpack: Buildpack = {
  name: "generic",
  label: "Procfile app",
  looksFor: "Procfile (any command)",

  detect(dir) {
    return fileExists(join(dir, "Procfile"));
  },

  async build(ctx) {
    ctx.onLine(formatDetail("No build step: running the Procfile's commands as they are"));
  },

  async release(dir) {
    const procfile = (await readProcfile(dir)) ?? {};
    if (runnableTypes(procfile).length === 0) {
      throw new BuildStepError(`the Procfile declares no process types: add lines like "web: ./server --port $PORT"`);
    }
    return procfile;
  },
};
