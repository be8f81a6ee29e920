import { defineErrors } from "../core/index.ts";

/** Codes raised while running an app's processes: the sandbox, the process runtime, Docker. */
export const RUNTIME_ERRORS = defineErrors({
  image_missing: { status: 422, expose: true, hint: "the release's image is gone from the Docker engine: push again to build it" },
  network_rules_failed: { status: 500, expose: false, hint: "deck could not change an app's network rules (nftables); deck doctor shows what the host refuses" },
  process_cwd_missing: { status: 500, expose: false, hint: "the release's files are gone from the data dir: push again to build it" },
  process_exists: { status: 500, expose: false, hint: "a process of the same generation is already running: wait for the change in progress, then try again" },
  process_start_failed: { status: 500, expose: false, hint: "the app's process could not be started: see `logs APP`, and the deck server log for the runtime's reason" },
  process_start_timeout: { status: 500, expose: false, hint: "the app's process supervisor did not start in time: try again; the deck server log has the details" },
  sandbox_unavailable: { status: 503, expose: false, hint: "this host cannot run apps in their sandbox: a platform admin runs `deck doctor` to see what is missing" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof RUNTIME_ERRORS, true> {}
}
