import { defineErrors } from "../core/index.ts";

/** Codes raised by the deploy pipeline, and why a deployment failed (stored with it as deployments.error_code). */
export const DEPLOY_ERRORS = defineErrors({
  bad_slug: { status: 422, expose: true, hint: "the build left an unusable .deck/env.json: fix the build and push again" },
  deploy_failed: { status: 422, expose: true, hint: "the running release is untouched: see the reason, fix it and try again (builds:output APP shows the build)" },
  deploy_in_progress: { status: 409, expose: true, hint: "wait for the app's deploy in progress to finish (or builds:cancel APP), then try again" },
  no_build: { status: 404, expose: true, hint: "there is no such build: builds:list APP shows the app's builds" },
  no_slug: { status: 422, expose: true, hint: "the build's artifact is gone: push again to build it" },
  // Why a deployment failed, stored with it (deployments.error_code) and shown by builds:list.
  interrupted: { status: 503, expose: true, hint: "the deck server stopped while this ran: run it again (a push: push again)" },
  branch_moved: { status: 409, expose: true, hint: "the branch moved while the push waited in line: fetch, merge and push again" },
  build_failed: { status: 422, expose: true, hint: "the build's output above says which step failed: fix it and push again" },
  no_buildpack: { status: 422, expose: true, hint: "add one of the files the message lists, a Procfile or a Dockerfile, or choose one with builder:set APP" },
  out_of_memory: { status: 422, expose: true, hint: "the build went over DECK_BUILD_MEMORY: make it use less or ask a platform admin to raise the limit" },
  release_command_failed: { status: 422, expose: true, hint: "the Procfile's release command failed (its output is above): fix it and deploy again; the live release is untouched" },
  quota_exceeded: { status: 402, expose: true, hint: "the organisation has used what its plan (or its spend cap) allows this month: an owner upgrades with billing:plan ORG PLAN or raises billing:cap ORG" },
  health_check_failed: { status: 422, expose: true, hint: "the new processes did not answer the health check path in time: see their log lines above (or logs APP); the live release is untouched" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof DEPLOY_ERRORS, true> {}
}
