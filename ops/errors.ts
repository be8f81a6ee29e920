import { defineErrors } from "../core/index.ts";

/**
 * Codes raised by the operations users run over SSH and the API. The general ones (not_found,
 * forbidden, conflict, validation_failed, bad_argument) live here, the lowest part that raises them;
 * the SSH commands and the API raise them too.
 */
export const OPS_ERRORS = defineErrors({
  app_exists: { status: 409, expose: true, hint: "app names are unique across deck: pick another name" },
  app_not_found: { status: 404, expose: true, hint: "check the name with apps:list (GET /api/v1/apps); an app you have no role on is not shown" },
  artifact_pruned: { status: 422, expose: true, hint: "deck no longer keeps that build: push that commit again instead" },
  bad_argument: { status: 400, expose: true, hint: "the message says which argument is wrong and what it takes; `help` lists every SSH command with its usage" },
  bad_payload: { status: 400, expose: true, hint: "the webhook delivery is not what GitHub or GitLab send: check the webhook's content type (JSON) and events" },
  bad_signature: { status: 401, expose: true, hint: "set the webhook's secret at GitHub or GitLab to the one configured in deck (PUT /api/v1/apps/APP/webhook)" },
  conflict: { status: 409, expose: true, hint: "the message names what is in the way: change that first, then try again" },
  fetch_failed: { status: 502, expose: true, hint: "deck could not fetch the repository the webhook names: check its URL and that deck may reach it" },
  forbidden: { status: 403, expose: true, hint: "the message names the permission you lack: ask an owner or admin of the app or organisation for that role" },
  invalid_app_name: { status: 400, expose: true, hint: "app names are 1 to 63 lowercase letters, digits and dashes, starting with a letter" },
  no_release: { status: 422, expose: true, hint: "releases APP lists the releases; push to create the first one" },
  not_found: { status: 404, expose: true, hint: "the message names what does not exist: check the name or id" },
  validation_failed: { status: 400, expose: true, hint: "the message names the field and what it takes" },
  webhook_not_configured: { status: 404, expose: true, hint: "configure the app's webhook first (PUT /api/v1/apps/APP/webhook)" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof OPS_ERRORS, true> {}
}
