export { authenticateBearer, type Principal } from "./authenticate.ts";
export {
  beginMfaEnrolment,
  checkTotpCode,
  checkTotpOrRecoveryCode,
  confirmMfaEnrolment,
  disableMfa,
  mfaStatus,
  regenerateRecoveryCodes,
  useRecoveryCode,
  RECOVERY_CODE_COUNT,
  TOTP_SETTINGS,
  type MfaCheck,
  type MfaClock,
  type MfaEnrolment,
  type MfaStatus,
} from "./mfa.ts";
export { checkPasswordPolicy, hashPassword, verifyPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from "./passwords.ts";
export {
  createPersonalToken,
  listPersonalTokens,
  revokePersonalToken,
  verifyPersonalToken,
  DEFAULT_TOKEN_LIFETIME_DAYS,
  type CreatedPersonalToken,
  type CreatePersonalTokenInput,
  type PersonalToken,
  type VerifiedPersonalToken,
} from "./personal-tokens.ts";
export {
  accountKey,
  createRateLimiter,
  createSignInLimiter,
  ipKey,
  SIGN_IN_ACCOUNT_LIMIT,
  SIGN_IN_IP_LIMIT,
  type RateLimiter,
  type RateLimitOptions,
  type SignInLimiter,
  type SignInLimiterOptions,
  type TakeResult,
} from "./rate-limit.ts";
export { isScope, scopesAllow, MINIMUM_SCOPE, SCOPE_ACTIONS, SCOPES, type Scope } from "./scopes.ts";
export { createAuthDeps, issueSession, setPassword, signIn, SESSION_SCOPES, type AuthDeps, type Session, type SignInInput } from "./sign-in.ts";
export {
  keysDir,
  openSigningKeys,
  ACCESS_TOKEN_ALGORITHM,
  DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
  DEFAULT_KEY_RETENTION_SECONDS,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  TOKEN_TYPE,
  type AccessTokenClaims,
  type AccessTokenInput,
  type SigningKeys,
  type SigningKeysOptions,
} from "./signing-keys.ts";
