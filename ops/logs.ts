import { followLog, readLogTail, type DeployDeps } from "../deploy/index.ts";
import { authorizeApp, type Caller } from "./access.ts";

/** An app's log as `logs APP` and `GET /apps/APP/logs` show it: the last lines, then, if asked, each new one. */
export interface AppLog {
  lines: string[];
  /** Each line appended from now on, until `signal` aborts. */
  follow(onLine: (line: string) => void, signal: AbortSignal): Promise<void>;
}

/** The last `lines` lines of the app's log (app and build output), for whoever may read its logs. */
export async function readAppLog(deps: DeployDeps, caller: Caller, name: string, lines: number): Promise<AppLog> {
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const file = deps.paths.appLog(app.name);
  return { lines: await readLogTail(file, lines), follow: (onLine, signal) => followLog(file, onLine, signal) };
}
