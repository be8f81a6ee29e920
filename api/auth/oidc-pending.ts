import { hkdfSync } from "node:crypto";
import { EncryptJWT, jwtDecrypt } from "jose";
import { z } from "zod";
import { DeckError } from "../../core/index.ts";
import { OAUTH_PROVIDER_NAMES, type OAuthProviderName } from "./oidc-providers.ts";

/**
 * What the server must remember between sending the browser to the provider and its return: the
 * values that bind the callback to this browser (state, RFC 6749 §10.12), to this authorization request
 * (PKCE verifier, RFC 7636) and to this ID token (nonce, OIDC Core §3.1.2.1).
 */
export interface PendingSignIn {
  provider: OAuthProviderName;
  state: string;
  /** null for GitHub: plain OAuth 2.0 issues no ID token to carry a nonce. */
  nonce: string | null;
  codeVerifier: string;
  /** The redirect_uri sent to the provider; the token request must repeat it exactly. */
  redirectUri: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

/** A sign-in must come back within this time (also the cookie's lifetime). */
export const PENDING_TTL_SECONDS = 600;

const PendingSchema = z.object({
  provider: z.enum(OAUTH_PROVIDER_NAMES),
  state: z.string().min(1),
  nonce: z.string().min(1).nullable(),
  codeVerifier: z.string().min(43).max(128),
  redirectUri: z.string().url(),
  createdAt: z.number().int().nonnegative(),
});

const MIN_KEY_BYTES = 32;

/**
 * A key for this purpose only, derived from the caller's secret (e.g. the master key) with HKDF, so the
 * same secret can serve other purposes without one use weakening another.
 */
function pendingKey(secret: Uint8Array | string): Uint8Array {
  const bytes = typeof secret === "string" ? Buffer.from(secret, "utf8") : secret;
  if (bytes.length < MIN_KEY_BYTES) throw new Error(`the sign-in cookie key must be at least ${MIN_KEY_BYTES} bytes`);
  return new Uint8Array(hkdfSync("sha256", bytes, "", "clouddeck oidc pending sign-in v1", 32));
}

/**
 * Seals a pending sign-in into a string for a cookie: an encrypted JWT (dir + A256GCM), so the browser
 * can neither read the PKCE verifier nor change any field, and it expires after PENDING_TTL_SECONDS.
 */
export async function sealPending(pending: PendingSignIn, secret: Uint8Array | string): Promise<string> {
  return new EncryptJWT({ ...PendingSchema.parse(pending) })
    .setProtectedHeader({ alg: "dir", enc: "A256GCM", typ: "deck-oidc-pending" })
    .setIssuedAt(Math.floor(pending.createdAt / 1000))
    .setExpirationTime(Math.floor(pending.createdAt / 1000) + PENDING_TTL_SECONDS)
    .encrypt(pendingKey(secret));
}

/**
 * Opens what sealPending made. A missing, altered, foreign or expired value is DeckError
 * `oidc_state_mismatch`: whatever the cause, the user's remedy is to start signing in again.
 */
export async function openPending(sealed: string | undefined | null, secret: Uint8Array | string, options: { now?: Date } = {}): Promise<PendingSignIn> {
  const key = pendingKey(secret);
  const refuse = (why: string, cause?: unknown) => new DeckError("oidc_state_mismatch", `sign-in session ${why}; start signing in again`, {}, { cause });
  if (!sealed) throw refuse("is missing (cookies blocked, or a different browser)");
  let payload: unknown;
  try {
    ({ payload } = await jwtDecrypt(sealed, key, {
      keyManagementAlgorithms: ["dir"],
      contentEncryptionAlgorithms: ["A256GCM"],
      typ: "deck-oidc-pending",
      currentDate: options.now,
      clockTolerance: 0,
    }));
  } catch (e) {
    const expired = (e as { code?: string }).code === "ERR_JWT_EXPIRED";
    throw refuse(expired ? "expired" : "is not valid", e);
  }
  const parsed = PendingSchema.safeParse(payload);
  if (!parsed.success) throw refuse("is not valid");
  return parsed.data;
}
