import { defineErrors } from "../../core/index.ts";

/** Codes the Stripe adapter raises when Stripe itself does not do what deck asked. */
export const STRIPE_ERRORS = defineErrors({
  stripe_unavailable: {
    status: 503,
    expose: true,
    hint: "Stripe could not be reached or failed to answer: try again in a few minutes; deck's own billing records are unaffected",
  },
  stripe_refused: {
    status: 502,
    expose: false,
    hint: "Stripe refused deck's request: a platform admin finds Stripe's answer in the deck server log (check STRIPE_SECRET_KEY and the Stripe account's settings)",
  },
});

declare module "../../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof STRIPE_ERRORS, true> {}
}
