import { appNameFromRepoPath, DeckError, decide } from "../core/index.ts";
import { authorizeApp, createApp, orgForNewApp, type Caller, type DeployDeps } from "../ops/index.ts";
import { audit, findApp, type AppRow } from "../store/queries/index.ts";
import type { GitService } from "./git-process.ts";

/**
 * Decides whether a git request may run, for SSH and HTTP alike: the repository path must name a
 * valid app (nothing else on disk is ever reachable), the caller must hold the right role, and a
 * first push by someone allowed to create apps creates the app.
 */
export async function resolveGitTarget(deps: DeployDeps, caller: Caller, service: GitService, rawPath: string): Promise<AppRow> {
  const name = appNameFromRepoPath(rawPath);
  if (!name.ok) throw new DeckError("invalid_app_name", name.message);
  const action = service === "receive-pack" ? "app:deploy" : "app:read";
  const existing = await findApp(deps.db, name.name);
  if (!existing && service === "receive-pack") {
    const org = orgForNewApp(caller);
    if (org !== null || caller.actor.isAdmin) {
      const app = await createApp(deps, caller, name.name);
      return app;
    }
  }
  const app = await authorizeApp(deps.db, caller, action, name.name);
  await deps.repos.ensure(app.name);
  if (service === "receive-pack") {
    await audit(deps.db, { userId: caller.user.id, action: "git:push", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
  }
  return app;
}

export { decide };
