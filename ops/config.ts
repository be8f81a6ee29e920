import { DeckError, maskValue } from "../core/index.ts";
import { redeploy, type DeployDeps } from "../deploy/index.ts";
import { audit, getConfigVars, insertRelease, saveConfigVars } from "../store/queries/index.ts";
import { authorizeApp, REVEAL_CONFIG, type Caller } from "./access.ts";
import type { Out } from "./audit.ts";
import { liveRelease } from "./releases.ts";

/** An app's config vars: shown (masked unless revealed), read one at a time, set and unset. */

/**
 * The app's config vars, each value masked; with `reveal`, in clear, for those who may change config
 * (REVEAL_CONFIG). The one place that rule is checked, for SSH's `config:show --reveal` and the API's
 * `?reveal=true` alike.
 */
export async function showConfig(deps: DeployDeps, caller: Caller, name: string, options: { reveal?: boolean } = {}): Promise<Record<string, string>> {
  const app = await authorizeApp(deps.db, caller, "config:get", name);
  const vars = await getConfigVars(deps.db, app.id);
  if (!options.reveal) return Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, maskValue(v)]));
  await authorizeApp(deps.db, caller, REVEAL_CONFIG, name);
  return vars;
}

/** One config var's value, in clear (`config:get`); not_found when the app does not set it. */
export async function configValue(deps: DeployDeps, caller: Caller, name: string, key: string): Promise<string> {
  const app = await authorizeApp(deps.db, caller, "config:get", name);
  const vars = await getConfigVars(deps.db, app.id);
  if (!(key in vars)) throw new DeckError("not_found", `${key} is not set on ${name}`);
  return vars[key];
}

const CONFIG_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function parseAssignments(args: string[]): Record<string, string> {
  if (args.length === 0) throw new DeckError("bad_argument", "no KEY=VALUE given; usage: config:set APP KEY=VALUE [KEY=VALUE ...]");
  const out: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(0, eq) : "";
    if (!CONFIG_KEY.test(key)) throw new DeckError("bad_argument", `"${a.split("=")[0].slice(0, 40)}" is not a KEY=VALUE pair with a key of letters, digits and _`);
    if (key === "PORT") throw new DeckError("bad_argument", "PORT is set by deck for each web process and cannot be configured");
    out[key] = a.slice(eq + 1);
  }
  return out;
}

/** Sets or unsets config vars; when the app is live this makes a new release and redeploys it. */
export async function changeConfig(deps: DeployDeps, caller: Caller, name: string, change: { set?: Record<string, string>; unset?: string[] }, out: Out): Promise<{ version: number | null }> {
  const app = await authorizeApp(deps.db, caller, "config:set", name);
  for (const k of change.unset ?? []) if (!CONFIG_KEY.test(k)) throw new DeckError("bad_argument", `"${k.slice(0, 40)}" is not a valid config key`);
  return deps.queue.run(app, "config", (pos) => out(`-----> Waiting for the deploy in progress (position ${pos} in line)`), async () => {
    const vars = { ...(await getConfigVars(deps.db, app.id)), ...(change.set ?? {}) };
    for (const k of change.unset ?? []) delete vars[k];
    const keys = [...Object.keys(change.set ?? {}), ...(change.unset ?? [])];
    const audited = () => audit(deps.db, { userId: caller.user.id, action: "config:set", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, keys } });
    const current = await liveRelease(deps, app);
    if (!current) {
      await saveConfigVars(deps.db, app.id, vars);
      await audited();
      out(`-----> Config saved; ${app.name} has no release yet, it applies on the first deploy`);
      return { version: null };
    }
    const what = change.set ? `Set ${Object.keys(change.set).join(", ")}` : `Unset ${(change.unset ?? []).join(", ")}`;
    const rel = await deps.db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: current.buildId, config: vars, commitSha: current.commitSha, description: what, createdBy: caller.user.id }));
    // The config is saved as the release goes live: config and live release never disagree.
    await redeploy(deps, caller.user.id, app, "config", rel, true, out, { commit: (tx) => saveConfigVars(tx, app.id, vars), unchanged: "config unchanged" });
    await audited();
    return { version: rel.version };
  });
}
