import { defineErrors } from "../core/index.ts";

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
