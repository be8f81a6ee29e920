import { defineErrors } from "../core/index.ts";

/**
 * Codes raised by the operations users run (over SSH and the API) and the deploy pipeline. The
 * general ones (not_found, forbidden, conflict, validation_failed, bad_argument) live here, the
 * lowest part that raises them; the SSH commands and the API use them too.
 */
export const DEPLOY_ERRORS = defineErrors({
  app_exists: { status: 409, expose: true, hint: "app names are unique across deck: pick another name" },
  app_not_found: { status: 404, expose: true, hint: "check the name with apps:list (GET /api/v1/apps); an app you have no role on is not shown" },
  artifact_pruned: { status: 422, expose: true, hint: "deck no longer keeps that build: push that commit again instead" },
  bad_argument: { status: 400, expose: true, hint: "the message says which argument is wrong and what it takes; `help` lists every SSH command with its usage" },
  bad_payload: { status: 400, expose: true, hint: "the webhook delivery is not what GitHub or GitLab send: check the webhook's content type (JSON) and events" },
  bad_signature: { status: 401, expose: true, hint: "set the webhook's secret at GitHub or GitLab to the one configured in deck (PUT /api/v1/apps/APP/webhook)" },
  bad_slug: { status: 422, expose: true, hint: "the build left an unusable .deck/env.json: fix the build and push again" },
  conflict: { status: 409, expose: true, hint: "the message names what is in the way: change that first, then try again" },
  deploy_failed: { status: 422, expose: true, hint: "the running release is untouched: see the reason, fix it and try again (builds:output APP shows the build)" },
  deploy_in_progress: { status: 409, expose: true, hint: "wait for the app's deploy in progress to finish (or builds:cancel APP), then try again" },
  fetch_failed: { status: 502, expose: true, hint: "deck could not fetch the repository the webhook names: check its URL and that deck may reach it" },
  forbidden: { status: 403, expose: true, hint: "the message names the permission you lack: ask an owner or admin of the app or organisation for that role" },
  invalid_app_name: { status: 400, expose: true, hint: "app names are 1 to 63 lowercase letters, digits and dashes, starting with a letter" },
  no_build: { status: 404, expose: true, hint: "there is no such build: builds:list APP shows the app's builds" },
  no_release: { status: 422, expose: true, hint: "releases APP lists the releases; push to create the first one" },
  no_slug: { status: 422, expose: true, hint: "the build's artifact is gone: push again to build it" },
  not_found: { status: 404, expose: true, hint: "the message names what does not exist: check the name or id" },
  validation_failed: { status: 400, expose: true, hint: "the message names the field and what it takes" },
  webhook_not_configured: { status: 404, expose: true, hint: "configure the app's webhook first (PUT /api/v1/apps/APP/webhook)" },
  // Why a deployment failed, stored with it (deployments.error_code) and shown by builds:list.
  interrupted: { status: 503, expose: true, hint: "the deck server stopped while this ran: run it again (a push: push again)" },
  branch_moved: { status: 409, expose: true, hint: "the branch moved while the push waited in line: fetch, merge and push again" },
  build_failed: { status: 422, expose: true, hint: "the build's output above says which step failed: fix it and push again" },
  no_buildpack: { status: 422, expose: true, hint: "add one of the files the message lists, a Procfile or a Dockerfile, or choose one with builder:set APP" },
  out_of_memory: { status: 422, expose: true, hint: "the build went over DECK_BUILD_MEMORY: make it use less or ask a platform admin to raise the limit" },
  release_command_failed: { status: 422, expose: true, hint: "the Procfile's release command failed (its output is above): fix it and deploy again; the live release is untouched" },
  health_check_failed: { status: 422, expose: true, hint: "the new processes did not answer the health check path in time: see their log lines above (or logs APP); the live release is untouched" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof DEPLOY_ERRORS, true> {}
}
