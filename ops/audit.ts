import type { DeployDeps } from "../deploy/index.ts";
import { audit } from "../store/queries/index.ts";
import type { Caller } from "./access.ts";

/** Where a command's progress lines go (`-----> …`): the SSH session, or the API's `output` list. */
export type Out = (line: string) => void;

/** Writes a successful action of `caller` to the audit log, with the way they reached deck. */
export function recordAction(deps: Pick<DeployDeps, "db">, caller: Caller, action: string, target: string, data: Record<string, unknown> = {}): Promise<void> {
  return audit(deps.db, { userId: caller.user.id, action, target, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, ...data } });
}
