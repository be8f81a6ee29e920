import { recordRepoSize, type DeployDeps } from "../ops/index.ts";
import type { PushRegistry, PushSession } from "./push-registry.ts";

/**
 * git has finished with a push: the repository's size is stored on the push's build, then the push
 * ends (which lets the next push of the app start, so the size is its own, not the next one's).
 */
export async function finishPush(deps: DeployDeps, pushes: PushRegistry, push: PushSession): Promise<void> {
  try {
    if (push.deployCommit) await recordRepoSize(deps, push.app, push.deployCommit);
  } catch (e) {
    deps.log(`measuring the repository of ${push.app.name}: ${(e as Error).message}`);
  } finally {
    pushes.close(push.id);
  }
}
