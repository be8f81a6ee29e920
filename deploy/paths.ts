import { join } from "node:path";

/** Where deck keeps each kind of file under the data dir. App names are validated before they get here. */
export interface Paths {
  dataDir: string;
  repo(app: string): string;
  slugs(app: string): string;
  slug(app: string, buildId: number): string;
  cache(app: string): string;
  appLog(app: string): string;
  runDir: string;
  procStateDir: string;
  hookSocket: string;
  routerSocket: string;
  serverLog: string;
}

export function pathsFor(dataDir: string): Paths {
  const runDir = join(dataDir, "run");
  return {
    dataDir,
    repo: (app) => join(dataDir, "repos", `${app}.git`),
    slugs: (app) => join(dataDir, "apps", app, "slugs"),
    slug: (app, buildId) => join(dataDir, "apps", app, "slugs", String(buildId)),
    cache: (app) => join(dataDir, "cache", app),
    appLog: (app) => join(dataDir, "logs", `${app}.log`),
    runDir,
    procStateDir: join(runDir, "procs"),
    hookSocket: join(runDir, "hooks.sock"),
    routerSocket: join(runDir, "router.sock"),
    serverLog: join(dataDir, "logs", "deck-server.log"),
  };
}
