import { DeckError, isDeckError } from "../core/index.ts";
import { refreshRoute, type DeployDeps } from "../deploy/index.ts";
import { findApp, type AppRow } from "../store/queries/index.ts";

/**
 * Sends the app's route after a change saved in the database. When the router does not take it, the
 * change is undone (`undo`) and refused, so what deck says and what the router does never disagree.
 */
export async function applyOrUndo(deps: DeployDeps, app: AppRow, undo: () => Promise<void>, unchanged: string): Promise<void> {
  try {
    await refreshRoute(deps, app);
  } catch (e) {
    await undo().catch((u: Error) => deps.log(`${app.name}: could not undo a change the router did not take: ${u.message}`));
    // In case the router took the route after all (its answer lost on the way).
    await refreshRoute(deps, await reloadApp(deps, app)).catch((r: Error) => deps.log(`${app.name}: could not send the route again after the router refused it: ${r.message}`));
    if (isDeckError(e) && e.code === "router_unavailable") throw new DeckError(e.code, `the router is not answering (it restarts within seconds; try again); ${unchanged}`, e.data, { cause: e });
    throw e;
  }
}

/** The app's row as it is now (after a change), so the route sent to the router carries it. */
export async function reloadApp(deps: DeployDeps, app: AppRow): Promise<AppRow> {
  return (await findApp(deps.db, app.name)) ?? app;
}
