import { runnableTypes } from "../core/index.ts";
import { BuildStepError, formatDetail, type Buildpack } from "./buildpack.ts";
import { readProcfile, repoEntryExists } from "./repo-file.ts";

/** Any app that says how to run itself in a Procfile; nothing is built. */
export const genericBuildpack: Buildpack = {
  name: "generic",
  label: "Procfile app",
  looksFor: "Procfile (any command)",

  detect(dir) {
    return repoEntryExists(dir, "Procfile");
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
