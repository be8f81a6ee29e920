import { randomBytes } from "node:crypto";
import { defineErrors, isDeckError } from "../core/index.ts";

/** Codes raised by the SSH server and its commands. */
export const GITD_ERRORS = defineErrors({
  bad_host_key: { status: 500, expose: false, hint: "deck's SSH host key file is unusable: move it away and deck makes a new one" },
  bad_ssh_key: { status: 400, expose: true, hint: "send one OpenSSH public key line, e.g. the contents of ~/.ssh/id_ed25519.pub" },
  confirmation_required: { status: 400, expose: true, hint: "run the command again with --confirm APP" },
  input_too_large: { status: 413, expose: true, hint: "send only what the command reads on standard input" },
  unknown_command: { status: 400, expose: true, hint: "`help` lists every command" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof GITD_ERRORS, true> {}
}

/** What an SSH command that failed prints (one line on stderr) and, for an unexpected error, logs. */
export interface CommandErrorReport {
  line: string;
  /** For the deck server log; set only for errors deck did not expect. */
  log?: string;
}

/**
 * `deck: error (CODE): MESSAGE` for a DeckError; anything else is an internal error whose details
 * go to the log under an id the line names, as the API does with its request id.
 */
export function describeCommandError(e: unknown, command: string, newId: () => string = () => randomBytes(6).toString("hex")): CommandErrorReport {
  if (isDeckError(e)) return { line: `deck: error (${e.code}): ${e.message.replace(/\s*\n\s*/g, " ").trim()}` };
  const id = newId();
  return {
    line: `deck: error (internal): ${command} failed because of an internal error; the deck server log has the details (id ${id})`,
    log: `command ${command} failed (id ${id}): ${(e as Error)?.stack ?? String(e)}`,
  };
}
