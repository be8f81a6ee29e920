import { defineErrors } from "../core/index.ts";

/** Codes raised by the REST API itself: requests, authentication, MFA, sign-in with an identity provider. */
export const API_ERRORS = defineErrors({
  bad_request: { status: 400, expose: true, hint: "the message names what is wrong with the request; the OpenAPI document is at /api/v1/openapi.json" },
  insufficient_scope: { status: 403, expose: true, hint: "use a token with the scope the message names (POST /api/v1/tokens), or sign in" },
  invalid_credentials: { status: 401, expose: true, hint: "check the email and password" },
  invalid_expiry: { status: 400, expose: true, hint: "give a token expiry between 1 day and 10 years, or none" },
  invalid_mfa_code: { status: 401, expose: true, hint: "send the current code from your authenticator app (check the device's clock), or an unused recovery code" },
  invalid_scope: { status: 400, expose: true, hint: "give at least one of the scopes the message lists" },
  invalid_token: { status: 401, expose: true, hint: "the token is unknown, expired or revoked: sign in again (POST /api/v1/session) or create a new token" },
  invalid_token_name: { status: 400, expose: true, hint: "give the token a name of the length the message names" },
  mfa_already_enabled: { status: 409, expose: true, hint: "two-factor authentication is already on: turn it off first to enrol a new device" },
  mfa_not_enabled: { status: 409, expose: true, hint: "two-factor authentication is off for this account: turn it on first" },
  mfa_not_pending: { status: 409, expose: true, hint: "start a two-factor enrolment first, then confirm it with the newest code" },
  mfa_required: { status: 401, expose: true, hint: "send the code from your authenticator app (or a recovery code) with the email and password" },
  oidc_email_unverified: { status: 403, expose: true, hint: "verify an email address at the identity provider, then sign in again" },
  oidc_failed: { status: 401, expose: true, hint: "signing in with the identity provider failed: try again; if it keeps failing, a platform admin checks the provider's settings" },
  oidc_not_configured: { status: 404, expose: true, hint: "that sign-in provider is not set up on this deck: sign in with another one, or ask a platform admin" },
  oidc_state_mismatch: { status: 400, expose: true, hint: "the sign-in session expired or was used already: start signing in again" },
  payload_too_large: { status: 413, expose: true, hint: "send a smaller request body" },
  rate_limited: { status: 429, expose: true, hint: "wait as long as the Retry-After header says, then try again" },
  unauthenticated: { status: 401, expose: true, hint: "send `Authorization: Bearer TOKEN`: an API token, or an access token from POST /api/v1/session" },
  unsupported_media_type: { status: 415, expose: true, hint: "send the body as application/json" },
  weak_password: { status: 400, expose: true, hint: "pick a password the message allows: long enough, with several different characters, not your email address" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof API_ERRORS, true> {}
}
