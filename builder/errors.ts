import { defineErrors } from "../core/index.ts";

/** Codes raised by a build: checkout, cancellation, the build timeout. */
export const BUILDER_ERRORS = defineErrors({
  cancelled: { status: 409, expose: true, hint: "the build (or the wait for it) was cancelled, e.g. by builds:cancel: push again to build" },
  checkout_failed: { status: 422, expose: true, hint: "deck could not check out the pushed commit: push it again" },
  timeout: { status: 422, expose: true, hint: "the build ran past DECK_BUILD_TIMEOUT: make it faster (a cached dependency step) or ask a platform admin to raise the limit" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof BUILDER_ERRORS, true> {}
}
