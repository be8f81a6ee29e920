import { runnableTypes, type Procfile } from "../core/index.ts";
import { BuildStepError } from "./buildpack.ts";
import { listRepoDir, readProcfile } from "./repo-file.ts";

/** Where compiled buildpacks put the app's executables inside the slug. */
export const BIN_DIR = "bin";

async function listBinaries(dir: string): Promise<string[]> {
  return (await listRepoDir(dir, BIN_DIR)).sort();
}

/**
 * The process types of an app compiled into `bin/`: the Procfile's, with `web` defaulting to the
 * binary named `preferred` or, failing that, the only binary there is.
 */
export async function resolveCompiledProcesses(dir: string, preferred: string | undefined, language: string): Promise<Procfile> {
  const processes: Procfile = { ...(await readProcfile(dir)) };
  if (!processes.web) {
    const bins = await listBinaries(dir);
    const pick = preferred && bins.includes(preferred) ? preferred : bins.length === 1 ? bins[0] : undefined;
    if (pick) processes.web = `${BIN_DIR}/${pick}`;
    else if (bins.length > 1 && runnableTypes(processes).length === 0) {
      throw new BuildStepError(`the ${language} build made several commands (${bins.join(", ")}): add a Procfile line such as "web: ${BIN_DIR}/${bins[0]}"`);
    }
  }
  if (runnableTypes(processes).length === 0) {
    throw new BuildStepError(`the ${language} build made no command to run: add a main program or a Procfile with a "web:" line`);
  }
  return processes;
}
