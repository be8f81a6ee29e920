import { DeckError } from "../core/index.ts";
import { deleteUser, listAllUsers, resetUserMfa, revokeUserCredentials, suspendUser, unsuspendUser } from "../ops/accounts.ts";
import { defineCommands, pad, positionals } from "./command-kit.ts";

/** SSH commands for platform admins to manage users: list, suspend, unsuspend, delete, reset MFA, revoke credentials. */

const SUSPEND = "users:suspend EMAIL [--reason TEXT] [--stop-apps]";
const DELETE = "users:delete EMAIL --confirm EMAIL";
/** Enough for any deck installation's user list on one screen of `users:list`; the API pages further. */
const LIST_LIMIT = 1000;

defineCommands({
  "users:list": {
    usage: "users:list [--json]", help: "every user, whether they are platform admins and whether they are suspended (platform admins)", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      positionals(args, [], "users:list [--json]");
      const users = await listAllUsers(deps, caller, { limit: LIST_LIMIT, offset: 0 });
      if (args.json) return io.out(JSON.stringify(users));
      const rows = users.map((u) => [u.email, u.isAdmin ? "admin" : "", u.mfaEnabled ? "on" : "", u.suspendedAt ? `suspended ${u.suspendedAt.slice(0, 10)}${u.suspendReason ? `: ${u.suspendReason}` : ""}` : "active"]);
      for (const l of pad([["EMAIL", "ADMIN", "MFA", "STATE"], ...rows])) io.out(l);
    },
  },
  "users:suspend": {
    usage: SUSPEND, flags: ["--reason"], bools: ["--stop-apps"],
    help: "suspend a user: no sign-in, tokens, SSH commands or pushes; their apps keep running unless --stop-apps (platform admins)",
    run: async (deps, caller, args, io) => {
      const [email] = positionals(args, ["EMAIL"], SUSPEND);
      const reason = args.flags.get("--reason");
      const result = await suspendUser(deps, caller, email!, { reason: typeof reason === "string" ? reason : undefined, stopApps: args.flags.has("--stop-apps"), out: io.out });
      io.out(`suspended ${result.email}`);
      if (result.appsStopped.length) io.out(`stopped ${result.appsStopped.join(", ")}`);
      for (const a of result.appsNotStopped) io.err(`could not stop ${a.app}: ${a.reason}`);
      return result.appsNotStopped.length ? 1 : 0;
    },
  },
  "users:unsuspend": {
    usage: "users:unsuspend EMAIL", help: "let a suspended user in again (apps stopped with the suspension stay stopped; ps:start them)",
    run: async (deps, caller, args, io) => {
      const [email] = positionals(args, ["EMAIL"], "users:unsuspend EMAIL");
      io.out(`unsuspended ${(await unsuspendUser(deps, caller, email!)).email}`);
    },
  },
  "users:delete": {
    usage: DELETE, flags: ["--confirm"], help: "delete a user for good; their apps stay in their organisations (platform admins)",
    run: async (deps, caller, args, io) => {
      const [email] = positionals(args, ["EMAIL"], DELETE);
      const confirm = args.flags.get("--confirm");
      if (confirm === true) throw new DeckError("bad_argument", `--confirm needs a value; usage: ${DELETE}`);
      io.out(`deleted ${(await deleteUser(deps, caller, email!, confirm)).email}`);
    },
  },
  "users:mfa:reset": {
    usage: "users:mfa:reset EMAIL", help: "turn off a user's two-factor authentication (a lost authenticator); they can enrol again",
    run: async (deps, caller, args, io) => {
      const [email] = positionals(args, ["EMAIL"], "users:mfa:reset EMAIL");
      const r = await resetUserMfa(deps, caller, email!);
      io.out(r.mfaWasEnabled ? `two-factor authentication of ${r.email} is off; they sign in with their password and can enrol again` : `${r.email} had no two-factor authentication; nothing to reset`);
    },
  },
  "users:revoke": {
    usage: "users:revoke EMAIL", help: "revoke all personal access tokens and remove all SSH keys of a user",
    run: async (deps, caller, args, io) => {
      const [email] = positionals(args, ["EMAIL"], "users:revoke EMAIL");
      const r = await revokeUserCredentials(deps, caller, email!);
      io.out(`revoked ${r.tokensRevoked} token${r.tokensRevoked === 1 ? "" : "s"} and removed ${r.keysRemoved} SSH key${r.keysRemoved === 1 ? "" : "s"} of ${r.email}`);
    },
  },
});
